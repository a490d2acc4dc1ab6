/** @odoo-module */
/* The PWA's pages: models (with search), a model's versions, a version
 * (state timeline, validation reports, deployments, approve / promote /
 * roll back as the user's rights allow, feedback) and the live endpoints
 * with their traffic split. Every change is a JSON-RPC operation; what is
 * shown is reloaded when the bus says the record changed. */

import { Component, onWillStart, onWillUpdateProps, useState } from "@odoo/owl";
import { call } from "./api";
import { formatTime, useLive } from "./live";

const LIVE_DEPLOYMENTS = ["requested", "deploying", "active", "rolling_out_canary"];

class Page extends Component {
    static props = { info: Object, navigate: Function, id: { type: Number, optional: true } };

    setupPage() {
        this.state = useState({ loading: true, error: "", notice: "", busy: false });
        this.formatTime = formatTime;
        onWillStart(() => this.reload(this.props));
        onWillUpdateProps((next) => this.reload(next));
    }

    async reload(props = this.props) {
        try {
            await this.load(props);
            this.state.error = "";
        } catch (error) {
            this.state.error = error.message;
        } finally {
            this.state.loading = false;
        }
    }

    /** Run an operation from a button: its refusal is shown, not thrown. */
    async act(name, params, notice) {
        this.state.busy = true;
        this.state.notice = "";
        try {
            const result = await call(name, params);
            this.state.error = "";
            this.state.notice = notice;
            await this.reload();
            return result;
        } catch (error) {
            this.state.error = error.message;
        } finally {
            this.state.busy = false;
        }
    }

    label(kind, value) {
        const found = (this.props.info.choices[kind] || []).find(([key]) => key === value);
        return found ? found[1] : value;
    }
}

export class ModelsPage extends Page {
    static template = "creativeflow_mlops.PwaModels";

    setup() {
        this.search = useState({ q: "" });
        this.data = useState({ items: [], total: 0 });
        this.setupPage();
        useLive(() => this.reload());
    }

    async load() {
        const answer = await call("models.list", { q: this.search.q || undefined, limit: 50 });
        Object.assign(this.data, answer);
    }

    onSearch(event) {
        event.preventDefault();
        this.reload();
    }
}

export class ModelPage extends Page {
    static template = "creativeflow_mlops.PwaModel";

    setup() {
        this.data = useState({ model: null, versions: [] });
        this.setupPage();
        useLive((event) => event.model_id === this.props.id && this.reload());
    }

    async load({ id }) {
        const [model, versions] = await Promise.all([
            call("models.get", { id }),
            call("versions.list", { model_id: id, limit: 100 }),
        ]);
        Object.assign(this.data, { model, versions: versions.items });
    }

    get uploadHref() {
        return `#/upload?model=${encodeURIComponent(this.data.model.name)}`;
    }
}

export class VersionPage extends Page {
    static template = "creativeflow_mlops.PwaVersion";

    setup() {
        this.data = useState({ version: null, timeline: [], feedback: [] });
        this.approval = useState({ reason: "" });
        this.promotion = useState({ strategy: "blue_green", canary_percent: 10, reason: "" });
        this.rollback = useState({ reason: "" });
        this.review = useState({ rating: 0, comment: "" });
        this.setupPage();
        useLive((event) => event.version_id === this.props.id && this.reload());
    }

    async load({ id }) {
        const [version, events, feedback] = await Promise.all([
            call("versions.get", { id }),
            call("events.list", { version_id: id, limit: 500 }),
            call("feedback.list", { id, limit: 20 }),
        ]);
        Object.assign(this.data, {
            version,
            timeline: events.items.filter((event) => event.resource === "version"),
            feedback: feedback.items,
        });
    }

    get rights() {
        return this.props.info.rights;
    }

    get production() {
        return (this.data.version?.deployments || []).find(
            (d) => d.environment === "production" && LIVE_DEPLOYMENTS.includes(d.state)
        );
    }

    approve(event) {
        event.preventDefault();
        return this.act(
            "versions.deploy",
            { id: this.props.id, environment: "staging", reason: this.approval.reason || undefined },
            "Approved: the staging deployment is on its way."
        );
    }

    promote(event) {
        event.preventDefault();
        const params = {
            id: this.props.id,
            strategy: this.promotion.strategy,
            reason: this.promotion.reason || undefined,
        };
        if (this.promotion.strategy === "canary") {
            params.canary_percent = Number(this.promotion.canary_percent);
        }
        return this.act("versions.promote", params, "Promoted: production is on its way.");
    }

    rollBack(event) {
        event.preventDefault();
        return this.act(
            "deployments.rollback",
            { id: this.production.id, reason: this.rollback.reason || undefined },
            "Rolled back: the previous version serves production again."
        );
    }

    async sendFeedback(event) {
        event.preventDefault();
        if (!this.review.rating) {
            this.state.error = "Choose a rating from 1 to 5.";
            return;
        }
        const sent = await this.act(
            "feedback.create",
            {
                version_id: this.props.id,
                rating: Number(this.review.rating),
                comment: this.review.comment || undefined,
            },
            "Thank you: your feedback is recorded."
        );
        if (sent) {
            Object.assign(this.review, { rating: 0, comment: "" });
        }
    }
}

export class DeploymentsPage extends Page {
    static template = "creativeflow_mlops.PwaDeployments";

    setup() {
        this.filter = useState({ environment: "" });
        this.data = useState({ endpoints: [], deployments: [] });
        this.setupPage();
        useLive((event) => event.resource !== "version" && this.reload());
    }

    async load() {
        const environment = this.filter.environment || undefined;
        const [endpoints, deployments] = await Promise.all([
            call("endpoints.list", { environment }),
            call("deployments.list", { environment, limit: 50 }),
        ]);
        Object.assign(this.data, {
            endpoints: endpoints.items,
            deployments: deployments.items,
        });
    }

    trafficLabel(entry) {
        const shares = entry.traffic.map((share) => `${share.version} ${share.percent}%`);
        return `Traffic: ${shares.join(", ")}`;
    }
}
