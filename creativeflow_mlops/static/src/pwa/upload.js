/** @odoo-module */
/* Upload a version straight to the object store: uploads.create gives one
 * presigned URL per part, each part is PUT from the browser (progress from
 * the request body), uploads.complete hands the ETags back. What has been
 * sent is kept in localStorage under the file and the version, so a dropped
 * connection retries the part that failed and a page reloaded (the same
 * file picked again) goes on from the first part that is missing. */

import { Component, onWillUnmount, useState } from "@odoo/owl";
import { ApiError, call, putPart } from "./api";

const STORE_PREFIX = "mlops-upload:";
const MAX_TRIES = 8;

function storeKey(file, metadata) {
    return `${STORE_PREFIX}${metadata.model}@${metadata.version}:${file.name}:${file.size}:${file.lastModified}`;
}

function pause(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function online() {
    return navigator.onLine
        ? Promise.resolve()
        : new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
}

async function resumable(key) {
    const saved = JSON.parse(localStorage.getItem(key) || "null");
    if (!saved) {
        return null;
    }
    try {
        const upload = await call("uploads.get", { id: saved.upload_id });
        if (upload.state === "open") {
            return saved;
        }
    } catch (error) {
        if (error.code === "offline") {
            throw error;
        }
    }
    localStorage.removeItem(key);
    return null;
}

/** Send ``file`` as the version described by ``metadata`` (model, version,
 * model_format, ...); resolves to uploads.complete's answer.
 * ``report({sent, total, status})`` follows it. */
export async function uploadVersion(file, metadata, report) {
    const key = storeKey(file, metadata);
    let saved = await resumable(key);
    if (saved) {
        report({ status: "resuming" });
    } else {
        const { model, version, ...rest } = metadata;
        const started = await call("uploads.create", {
            model,
            version,
            filename: file.name,
            size: file.size,
            content_type: file.type || "application/octet-stream",
            metadata: rest,
        });
        saved = { ...started, etags: {} };
        localStorage.setItem(key, JSON.stringify(saved));
    }
    const partSize = saved.part_size;
    let sent = Object.keys(saved.etags).reduce(
        (total, number) => total + Math.min(partSize, file.size - (number - 1) * partSize),
        0
    );
    report({ sent, total: file.size, status: "sending" });
    for (const { part_number: number, url } of saved.parts) {
        if (saved.etags[number]) {
            continue;
        }
        const blob = file.slice((number - 1) * partSize, number * partSize);
        for (let attempt = 1; ; attempt++) {
            try {
                const etag = await putPart(url, blob, (loaded) =>
                    report({ sent: sent + loaded, total: file.size, status: "sending" })
                );
                saved.etags[number] = etag;
                localStorage.setItem(key, JSON.stringify(saved));
                break;
            } catch (error) {
                if (!error.retry || attempt >= MAX_TRIES) {
                    throw new ApiError({
                        code: "upload_failed",
                        message: `Part ${number} could not be sent (${error.message}); pick the same file again to go on from there.`,
                    });
                }
                report({ sent, total: file.size, status: "retrying", attempt });
                await online();
                await pause(Math.min(500 * 2 ** attempt, 15000));
            }
        }
        sent += blob.size;
        report({ sent, total: file.size, status: "sending" });
    }
    report({ sent, total: file.size, status: "completing" });
    const parts = Object.entries(saved.etags).map(([number, etag]) => ({
        part_number: Number(number),
        etag,
    }));
    const answer = await call("uploads.complete", { id: saved.upload_id, parts });
    localStorage.removeItem(key);
    return answer;
}

export class UploadPage extends Component {
    static template = "creativeflow_mlops.PwaUpload";
    static props = { info: Object, navigate: Function, model: { type: String, optional: true } };

    setup() {
        const choices = this.props.info.choices;
        this.form = useState({
            model: this.props.model || "",
            version: "",
            model_format: "onnx",
            interface_type: "kserve_v2",
            task_type: "",
            description: "",
        });
        this.choices = choices;
        this.state = useState({ busy: false, sent: 0, total: 0, status: "", error: "" });
        this.file = null;
        this.alive = true;
        onWillUnmount(() => (this.alive = false));
    }

    get percent() {
        return this.state.total ? Math.floor((100 * this.state.sent) / this.state.total) : 0;
    }

    get statusText() {
        const { status, attempt } = this.state;
        return {
            resuming: "Going on with the parts already sent…",
            sending: `Sending: ${this.percent}%`,
            retrying: `The connection dropped; trying again (attempt ${attempt})…`,
            completing: "Checking the parts in the store…",
            done: "Uploaded: the version is being verified and validated.",
        }[status] || "";
    }

    onFile(event) {
        this.file = event.target.files[0] || null;
        this.state.error = "";
    }

    async submit(event) {
        event.preventDefault();
        if (!this.file) {
            this.state.error = "Choose the artifact file.";
            return;
        }
        const metadata = Object.fromEntries(
            Object.entries(this.form).filter(([, value]) => value !== "")
        );
        Object.assign(this.state, { busy: true, error: "", sent: 0, total: this.file.size });
        try {
            const answer = await uploadVersion(this.file, metadata, (progress) => {
                if (this.alive) {
                    Object.assign(this.state, progress);
                }
            });
            this.state.status = "done";
            this.props.navigate(`#/versions/${answer.version_id}`);
        } catch (error) {
            this.state.error = error.message;
            this.state.status = "";
        } finally {
            this.state.busy = false;
        }
    }
}
