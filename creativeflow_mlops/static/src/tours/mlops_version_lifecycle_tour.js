/** @odoo-module **/
// Drives a validated version through the form: approve for staging with a
// reason in the approval dialog, then archive it.
import {registry} from "@web/core/registry";

registry.category("web_tour.tours").add("creativeflow_mlops_version_lifecycle", {
    url: "/odoo/action-creativeflow_mlops.mlops_model_version_action",
    steps: () => [
        {
            content: "Open the validated version",
            trigger: ".o_data_row .o_data_cell:contains(tour-model)",
            run: "click",
        },
        {
            content: "It is validated",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Validated)",
        },
        {
            content: "Approve it for staging",
            trigger: ".o_statusbar_buttons button:contains(Approve Staging)",
            run: "click",
        },
        {
            content: "Say why",
            trigger: ".modal div[name=reason] textarea",
            run: "edit Benchmarks look right",
        },
        {
            content: "Confirm the approval",
            trigger: ".modal button[name=action_confirm]",
            run: "click",
        },
        {
            content: "The version waits for its staging deployment",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Staging Pending)",
        },
        {
            content: "The approval is in the chatter",
            trigger: ".o-mail-Message:contains(Benchmarks look right)",
        },
        {
            content: "Archive it",
            trigger: ".o_statusbar_buttons button[name=action_archive_version]",
            run: "click",
        },
        {
            content: "Confirm",
            trigger: ".modal-footer button.btn-primary",
            run: "click",
        },
        {
            content: "The version is archived",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains(Archived)",
        },
    ],
});
