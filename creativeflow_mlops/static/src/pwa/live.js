/** @odoo-module */
/* Live state: the Odoo bus's ``mlops.event`` notifications (the same
 * events as events.list) re-broadcast to the pages that show them. */

import { EventBus, onMounted, onWillUnmount } from "@odoo/owl";

export const live = new EventBus();

/** Call ``callback(event)`` for every event while the component is shown. */
export function useLive(callback) {
    const listener = ({ detail }) => callback(detail);
    onMounted(() => live.addEventListener("event", listener));
    onWillUnmount(() => live.removeEventListener("event", listener));
}

export function formatTime(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
}
