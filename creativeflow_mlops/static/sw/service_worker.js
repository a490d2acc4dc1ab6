/* CreativeFlow MLOps: the PWA's service worker (served as /mlops/app/sw.js,
 * scope /mlops/app). It keeps the shell for offline use: the app page
 * (network first, the last good copy when offline), its asset bundles and
 * icons (cache first: their URLs change with their content) and an offline
 * page. API calls (/mlops/rpc, /mlops/api, the bus) always go to the
 * network: a state shown must never be a stale copy. */
const VERSION = "__MLOPS_SW_VERSION__";
const CACHE = `mlops-shell-${VERSION}`;
const APP = "/mlops/app";
const OFFLINE = "/mlops/app/offline";
const PRECACHE = [
    OFFLINE,
    "/mlops/app/manifest.webmanifest",
    "/creativeflow_mlops/static/img/icon-192.png",
    "/creativeflow_mlops/static/img/icon-512.png",
];
const IMMUTABLE = ["/web/assets/", "/web/static/", "/creativeflow_mlops/static/"];

self.addEventListener("install", (event) => {
    event.waitUntil(
        caches
            .open(CACHE)
            .then((cache) => cache.addAll(PRECACHE))
            .then(() => self.skipWaiting())
    );
});

self.addEventListener("activate", (event) => {
    event.waitUntil(
        caches
            .keys()
            .then((keys) =>
                Promise.all(
                    keys
                        .filter((key) => key.startsWith("mlops-shell-") && key !== CACHE)
                        .map((key) => caches.delete(key))
                )
            )
            .then(() => self.clients.claim())
    );
});

async function shell(request) {
    const cache = await caches.open(CACHE);
    try {
        const answer = await fetch(request);
        // a login redirect or an error page is not the shell
        if (answer.ok && answer.type === "basic" && !answer.redirected) {
            await cache.put(APP, answer.clone());
        }
        return answer;
    } catch {
        return (await cache.match(APP)) || (await cache.match(OFFLINE));
    }
}

async function immutable(request) {
    const cache = await caches.open(CACHE);
    const kept = await cache.match(request);
    if (kept) {
        return kept;
    }
    const answer = await fetch(request);
    if (answer.ok && answer.type === "basic") {
        await cache.put(request, answer.clone());
    }
    return answer;
}

self.addEventListener("fetch", (event) => {
    const request = event.request;
    const url = new URL(request.url);
    if (request.method !== "GET" || url.origin !== self.location.origin) {
        return;
    }
    if (request.mode === "navigate" && url.pathname === APP) {
        event.respondWith(shell(request));
    } else if (request.mode === "navigate" && url.pathname.startsWith(APP)) {
        event.respondWith(
            fetch(request).catch(async () => (await caches.match(OFFLINE)) || Response.error())
        );
    } else if (IMMUTABLE.some((prefix) => url.pathname.startsWith(prefix))) {
        event.respondWith(immutable(request));
    }
});
