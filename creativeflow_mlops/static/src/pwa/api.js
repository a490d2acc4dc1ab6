/** @odoo-module */
/* The PWA's API: the JSON-RPC face (/mlops/rpc/<operation>, the Odoo
 * session) and direct multipart uploads to the presigned part URLs that
 * uploads.create hands out. */

let callId = 0;

export class ApiError extends Error {
    constructor({ code, message, details, http_status: status }) {
        super(message);
        this.code = code;
        this.details = details || {};
        this.status = status;
    }
}

/** The result of the operation ``name``, or an ApiError with the REST
 * error's code and message (a lost network is ``code: "offline"``). */
export async function call(name, params = {}) {
    let answer;
    try {
        answer = await fetch(`/mlops/rpc/${name}`, {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ jsonrpc: "2.0", method: "call", params, id: ++callId }),
        });
    } catch {
        throw new ApiError({
            code: "offline",
            message: "The server cannot be reached; check the connection.",
            http_status: 0,
        });
    }
    let body;
    try {
        body = await answer.json();
    } catch {
        throw new ApiError({
            code: "bad_answer",
            message: `The server answered ${answer.status} without JSON.`,
            http_status: answer.status,
        });
    }
    if (body.error) {
        throw new ApiError(body.error.data || { message: body.error.message });
    }
    return body.result;
}

/** PUT one part (a Blob) to its presigned URL; resolves to its ETag.
 * ``onProgress(bytesSent)`` follows the request body. */
export function putPart(url, blob, onProgress) {
    return new Promise((resolve, reject) => {
        const request = new XMLHttpRequest();
        request.open("PUT", url);
        request.upload.onprogress = (event) => onProgress(event.loaded);
        request.onload = () => {
            const etag = (request.getResponseHeader("ETag") || "").replaceAll('"', "");
            if (request.status >= 200 && request.status < 300 && etag) {
                resolve(etag);
            } else {
                const error = new Error(`the store answered ${request.status}`);
                // 4xx: the URL expired or the part was refused, a retry will not help
                error.retry = request.status >= 500 || request.status === 0;
                reject(error);
            }
        };
        request.onerror = () => {
            const error = new Error("the connection dropped");
            error.retry = true;
            reject(error);
        };
        request.ontimeout = request.onerror;
        request.send(blob);
    });
}
