# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""``POST /gitops/<target>/hooks/<provider>``: GitHub's ``pull_request``
and GitLab's merge request hooks, telling Odoo a change it waits for was
merged or closed (``services.gitops.hear``); ``argocd``: Argo CD's report
that it synced a folder, and how healthy it is
(``services.gitops.hear_report``). See docs/gitops/README.md. No API key:
the hook proves itself with the target's hook secret."""

from odoo import http
from odoo.http import request

from ..services import gitops
from .framework import _json, _raw_body, api_route
from .openapi_schemas import BODIES, ref


class MlopsGitopsApi(http.Controller):
    @api_route(
        "/gitops/<string:target>/hooks/<string:provider>",
        ["POST"],
        auth="signature",
        summary="A pull or merge request a deployment waits for was merged "
        "or closed (github, gitlab: their hooks, signed with the hook "
        "secret); or Argo CD synced a folder (argocd: its notification, "
        "with the hook secret in X-MLOps-Token)",
        body=BODIES["change_hook"],
        answer=(200, ref("ChangeHookAnswer")),
        errors=(409, 413),
        headers=(
            (
                "X-Hub-Signature-256",
                "GitHub: sha256=<hex HMAC-SHA256 of the raw body with the "
                "hook secret>, with X-GitHub-Event and X-GitHub-Delivery",
            ),
            (
                "X-Gitlab-Token",
                "GitLab: the hook secret, with X-Gitlab-Event-UUID",
            ),
            ("X-MLOps-Token", "Argo CD: the hook secret"),
        ),
    )
    def gitops_hook(self, target, provider, **_params):
        raw = _raw_body(gitops.MAX_HOOK_BYTES)
        found = gitops.find_target(request.env, target)
        headers = {k.lower(): v for k, v in request.httprequest.headers.items()}
        if provider == "argocd":
            return _json(gitops.hear_report(found, headers, raw))
        return _json(gitops.hear(found, provider, headers, raw))
