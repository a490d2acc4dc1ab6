/** @odoo-module */
/* The CreativeFlow MLOps PWA (/mlops/app): a shell with hash routes over
 * the pages, live events from the Odoo bus, the connection's state, and the
 * service worker that keeps the shell for offline use. */

import { App, Component, onMounted, onWillUnmount, useRef, useState, whenReady } from "@odoo/owl";
import { makeEnv, startServices } from "@web/env";
import { getTemplate } from "@web/core/templates";
import { _t } from "@web/core/l10n/translation";
import { useService } from "@web/core/utils/hooks";
import { live } from "./live";
import { DeploymentsPage, ModelPage, ModelsPage, VersionPage } from "./pages";
import { UploadPage } from "./upload";

const ROUTES = [
    [/^#\/models\/(\d+)$/, ModelPage, "Model"],
    [/^#\/versions\/(\d+)$/, VersionPage, "Version"],
    [/^#\/deployments$/, DeploymentsPage, "Deployments"],
    [/^#\/upload(?:\?model=(.*))?$/, UploadPage, "Upload"],
    [/^(?:#\/?(?:models)?)?$/, ModelsPage, "Models"],
];

export function route(hash) {
    for (const [pattern, page, title] of ROUTES) {
        const match = pattern.exec(hash);
        if (match) {
            const props = {};
            if (page === UploadPage) {
                if (match[1]) {
                    props.model = decodeURIComponent(match[1]);
                }
            } else if (match[1]) {
                props.id = Number(match[1]);
            }
            return { page, title, props };
        }
    }
    return { page: null, title: "Not found", props: {} };
}

export class PwaApp extends Component {
    static template = "creativeflow_mlops.PwaApp";
    static props = { info: Object };

    setup() {
        this.info = this.props.info;
        this.state = useState({
            hash: window.location.hash,
            online: navigator.onLine,
            live: false,
            notice: "",
        });
        this.main = useRef("main");
        const bus = useService("bus_service");
        const onEvent = (event) => {
            live.trigger("event", event);
            this.state.notice = this.describe(event);
        };
        const onHash = () => {
            this.state.hash = window.location.hash;
            // a new page: focus goes to its content, as a screen reader expects
            this.main.el?.focus();
        };
        const onOnline = () => (this.state.online = navigator.onLine);
        onMounted(() => {
            window.addEventListener("hashchange", onHash);
            window.addEventListener("online", onOnline);
            window.addEventListener("offline", onOnline);
            bus.subscribe("mlops.event", onEvent);
            bus.addEventListener("connect", () => (this.state.live = true));
            bus.addEventListener("disconnect", () => (this.state.live = false));
            bus.addEventListener("reconnect", () => {
                this.state.live = true;
                // what happened meanwhile
                live.trigger("event", {});
            });
            bus.start();
        });
        onWillUnmount(() => {
            window.removeEventListener("hashchange", onHash);
            window.removeEventListener("online", onOnline);
            window.removeEventListener("offline", onOnline);
            bus.unsubscribe("mlops.event", onEvent);
        });
    }

    get current() {
        return route(this.state.hash);
    }

    navigate(hash) {
        window.location.hash = hash;
    }

    describe(event) {
        const what = event.resource === "version" ? "Version" : event.resource?.replace("_", " ");
        return `${what} ${event.resource_id}: ${event.state || event.type}`;
    }

    isActive(hash) {
        return this.current.title === hash;
    }
}

function registerWorker() {
    if ("serviceWorker" in navigator) {
        navigator.serviceWorker
            .register("/mlops/app/sw.js", { scope: "/mlops/app" })
            .catch((error) => console.warn("MLOps: no offline shell:", error.message));
    }
}

export async function startPwa(info) {
    await whenReady();
    const env = makeEnv();
    await startServices(env);
    const app = new App(PwaApp, {
        getTemplate,
        env,
        props: { info },
        translateFn: _t,
        dev: env.debug,
    });
    await app.mount(document.body);
    registerWorker();
    return app;
}

if (window.odoo?.__mlops_info__) {
    startPwa(window.odoo.__mlops_info__);
}
