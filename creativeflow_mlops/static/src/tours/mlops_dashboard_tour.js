/** @odoo-module **/
// The overview counts a failed version and opens it from its state's card.
import {registry} from "@web/core/registry";

registry.category("web_tour.tours").add("creativeflow_mlops_dashboard", {
    url: "/odoo/action-creativeflow_mlops.mlops_dashboard_action",
    steps: () => [
        {
            content: "The overview counts the failed version",
            trigger: ".o_mlops_dashboard .o_mlops_state_card[data-state=validation_failed] .fs-3:not(:contains(/^0$/))",
        },
        {
            content: "Open the failed versions",
            trigger: ".o_mlops_state_card[data-state=validation_failed]",
            run: "click",
        },
        {
            content: "The list shows it",
            trigger: ".o_list_view .o_data_row .o_data_cell:contains(dash-model)",
        },
    ],
});
