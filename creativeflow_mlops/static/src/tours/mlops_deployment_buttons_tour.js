/** @odoo-module **/
// The deployment buttons as an Approver presses them, played by the system
// tests in a real browser against a real Odoo and its job runner
// (tests/system/test_backend_buttons.py), each tour from the record's form.
import {registry} from "@web/core/registry";

const tours = registry.category("web_tour.tours");

function approve(button, reason, pending) {
    return [
        {
            content: `Press ${button}`,
            trigger: `.o_statusbar_buttons button:contains(${button})`,
            run: "click",
        },
        {
            content: "Say why",
            trigger: ".modal div[name=reason] textarea",
            run: `edit ${reason}`,
        },
        {
            content: "Confirm",
            trigger: ".modal button[name=action_confirm]",
            run: "click",
        },
        {
            content: "The version waits for its deployment",
            trigger: `.o_statusbar_status button.o_arrow_button_current:contains(${pending})`,
        },
        {
            content: "The approval is in the chatter",
            trigger: `.o-mail-Message:contains(${reason})`,
        },
    ];
}

tours.add("creativeflow_mlops_approve_staging", {
    steps: () => [
        {
            content: "The version is validated",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Validated)",
        },
        ...approve("Approve Staging", "Holdout F1 0.93", "Staging Pending"),
    ],
});

tours.add("creativeflow_mlops_promote", {
    steps: () => [
        {
            content: "The version serves staging",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Staging)",
        },
        {
            content: "Its endpoint is on the form",
            trigger: ".o_form_view",
        },
        ...approve("Promote to Production", "Staging soaked clean", "Production Pending"),
    ],
});

tours.add("creativeflow_mlops_roll_back", {
    steps: () => [
        {
            content: "The production deployment is active",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Active)",
        },
        {
            content: "Press Roll Back",
            trigger: ".o_statusbar_buttons button:contains(Roll Back)",
            run: "click",
        },
        {
            content: "Say why",
            trigger: ".modal div[name=reason] textarea",
            run: "edit Error rate doubled",
        },
        {
            content: "Confirm the rollback",
            trigger: ".modal button[name=action_confirm]",
            run: "click",
        },
        {
            content: "The deployment no longer serves",
            trigger: ".o_statusbar_status button.o_arrow_button_current:not(:contains(Active))",
        },
    ],
});
