/** @odoo-module **/
// The app's landing page: versions by state, failing and stuck validations,
// recent activity. Everything comes from mlops.dashboard.get_dashboard_data,
// read with the user's rights; each figure opens the records behind it.
import {Component, onWillStart, useState} from "@odoo/owl";
import {_t} from "@web/core/l10n/translation";
import {registry} from "@web/core/registry";
import {useService} from "@web/core/utils/hooks";

const STATE_TONES = {
    production: "success",
    validation_failed: "danger",
    validated: "warning",
    validating: "info",
    staging_pending: "info",
    staging: "info",
    production_pending: "info",
};

export class MlopsDashboard extends Component {
    static template = "creativeflow_mlops.Dashboard";
    static props = ["*"];

    setup() {
        this.orm = useService("orm");
        this.action = useService("action");
        this.state = useState({data: null, loading: true});
        onWillStart(() => this.load());
    }

    async load() {
        this.state.loading = true;
        this.state.data = await this.orm.call("mlops.dashboard", "get_dashboard_data", []);
        this.state.loading = false;
    }

    tone(state) {
        return STATE_TONES[state] || "secondary";
    }

    openVersions(entry) {
        return this.action.doAction({
            type: "ir.actions.act_window",
            name: _t("Versions: %s", entry.label),
            res_model: "mlops.model.version",
            views: [
                [false, "list"],
                [false, "form"],
            ],
            domain: [["state", "=", entry.state]],
        });
    }

    openRecord(resModel, resId) {
        return this.action.doAction({
            type: "ir.actions.act_window",
            res_model: resModel,
            res_id: resId,
            views: [[false, "form"]],
        });
    }

    openAnalysis(xmlid) {
        return this.action.doAction(xmlid);
    }
}

registry.category("actions").add("creativeflow_mlops.dashboard", MlopsDashboard);
