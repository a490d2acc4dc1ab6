# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The PWA's shell (docs/reference/api.md: the JSON-RPC face is its API):
``/mlops/app`` (the OWL app, for a logged-in user), its web app manifest,
its service worker (served from ``/mlops/app/`` so that its scope covers
the app) and the offline page the worker keeps for when the network is
gone. Everything the app shows comes from ``/mlops/rpc/<operation>`` and
the Odoo bus."""

import functools
import hashlib
import json
from pathlib import Path

from odoo import http
from odoo.http import request

from ..lifecycle import (
    DEPLOYMENT_STATES,
    INTERFACE_TYPES,
    MODEL_FORMATS,
    STRATEGIES,
    TASK_TYPES,
    VERSION_STATES,
)

APP = "/mlops/app"
STATIC = "/creativeflow_mlops/static"
WORKER = Path(__file__).resolve().parent.parent / "static" / "sw" / "service_worker.js"

# the labels the app shows for the contract's values
CHOICES = {
    "version_state": VERSION_STATES,
    "deployment_state": DEPLOYMENT_STATES,
    "model_format": MODEL_FORMATS,
    "interface_type": INTERFACE_TYPES,
    "task_type": TASK_TYPES,
    "strategy": STRATEGIES,
}

GROUPS = {
    "user": "creativeflow_mlops.group_mlops_user",
    "approver": "creativeflow_mlops.group_mlops_approver",
    "manager": "creativeflow_mlops.group_mlops_manager",
}


def manifest():
    """The web app manifest: installable, standalone, scoped to the app."""
    return {
        "id": APP,
        "name": "CreativeFlow MLOps",
        "short_name": "MLOps",
        "description": "Models, versions, approvals and deployments of CreativeFlow.",
        "start_url": APP,
        "scope": APP,
        "display": "standalone",
        "orientation": "any",
        "background_color": "#ffffff",
        "theme_color": "#714b67",
        "icons": [
            {
                "src": f"{STATIC}/img/icon-192.png",
                "sizes": "192x192",
                "type": "image/png",
                "purpose": "any maskable",
            },
            {
                "src": f"{STATIC}/img/icon-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "any maskable",
            },
            {"src": f"{STATIC}/img/icon.svg", "sizes": "any", "type": "image/svg+xml"},
        ],
    }


@functools.cache
def worker_source():
    """The service worker, its cache named after its own content: a new
    release of it replaces the old caches. Read once per process: browsers
    ask for it on every navigation."""
    source = WORKER.read_text(encoding="utf-8")
    version = hashlib.sha256(source.encode()).hexdigest()[:12]
    return source.replace("__MLOPS_SW_VERSION__", version)


class MlopsPwa(http.Controller):
    @http.route(APP, type="http", auth="public", methods=["GET"], sitemap=False)
    def app(self, **_params):
        user = request.env.user
        if user._is_public():
            return request.redirect(f"/web/login?redirect={APP}", local=True)
        rights = {name: user.has_group(xmlid) for name, xmlid in GROUPS.items()}
        response = request.render(
            "creativeflow_mlops.mlops_pwa_app",
            {
                "session_info": request.env["ir.http"].session_info(),
                "mlops_info": {
                    "rights": rights,
                    "user": {"id": user.id, "name": user.name, "login": user.login},
                    "company": user.company_id.name,
                    "choices": CHOICES,
                },
            },
        )
        # the worker keeps its own copy for offline use; browsers must not
        # keep one that outlives the session
        response.headers["Cache-Control"] = "no-store"
        return response

    @http.route(
        f"{APP}/manifest.webmanifest",
        type="http",
        auth="none",
        methods=["GET"],
        sitemap=False,
        save_session=False,
    )
    def manifest(self, **_params):
        return request.make_response(
            json.dumps(manifest()),
            headers=[
                ("Content-Type", "application/manifest+json"),
                ("Cache-Control", "public, max-age=3600"),
            ],
        )

    @http.route(
        f"{APP}/sw.js",
        type="http",
        auth="none",
        methods=["GET"],
        sitemap=False,
        save_session=False,
    )
    def service_worker(self, **_params):
        return request.make_response(
            worker_source(),
            headers=[
                ("Content-Type", "text/javascript; charset=utf-8"),
                # browsers check for a new worker on every navigation anyway;
                # no HTTP cache in between
                ("Cache-Control", "no-cache"),
                ("Service-Worker-Allowed", APP),
            ],
        )

    @http.route(
        f"{APP}/offline",
        type="http",
        auth="public",
        methods=["GET"],
        sitemap=False,
        save_session=False,
    )
    def offline(self, **_params):
        return request.render("creativeflow_mlops.mlops_pwa_offline")
