"""A GitOps deployment as users run it: a real Odoo (job runner at two
channels) committing to a real git server (``git http-backend`` behind
basic authentication), the ModelCar pushed to a real OCI registry, a
recording server standing for GitHub's API; the test plays the reviewer
(it merges on the git server and sends GitHub's signed hook) and Argo CD
(it sends what docs/gitops/argocd-notifications.yaml renders), all over
HTTP. Nothing here touches the ORM."""

import hashlib
import hmac
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
import samples
import yaml
from test_backend_buttons import shoot_as_admin
from test_deployments import _wait

from conftest import GITOPS_HOOK_SECRET, REPOSITORY

APPROVER = "creativeflow_mlops.group_mlops_approver"
PUBLIC = "https://models.example.com"
NOTIFICATIONS = (
    Path(__file__).resolve().parents[2]
    / "docs"
    / "gitops"
    / "argocd-notifications.yaml"
)
TARGETS = "/odoo/action-creativeflow_mlops.mlops_deployment_target_action"
RUNS = "/odoo/action-creativeflow_mlops.mlops_pipeline_run_action"


def _git(git, *args):
    return subprocess.run(
        ["git", "--git-dir", str(git.bare(REPOSITORY)), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def _hook(stack, provider, body, headers):
    return requests.post(
        f"{stack.server.url}/mlops/api/v1/gitops/sysgit/hooks/{provider}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def _github_hook(change, number, merged, by="reviewer", secret=GITOPS_HOOK_SECRET):
    """GitHub's ``pull_request`` delivery closing ``change`` (the run's
    ``change``: commit and branch), merged or not, signed with ``secret``:
    (body, headers)."""
    body = json.dumps(
        {
            "action": "closed",
            "number": number,
            "pull_request": {
                "number": number,
                "merged": merged,
                "closed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "merge_commit_sha": change["commit"] if merged else None,
                "head": {"ref": change["branch"], "sha": change["commit"]},
                "merged_by": {"login": by},
            },
            "repository": {"full_name": "acme/ops"},
        }
    ).encode()
    return body, {
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def _argocd(git, environment, model, images):
    """What the notification template renders for the Application of
    ``<environment>/<model>``, synced from main."""
    config = next(yaml.safe_load_all(NOTIFICATIONS.read_text()))
    body = yaml.safe_load(config["data"]["template.mlops-report"])["webhook"]
    body = body["mlops"]["body"]
    for expression, value in {
        ".app.metadata.name": f"mlops-{environment}-{model}",
        ".app.spec.source.path": f"{environment}/{model}",
        ".app.status.sync.revision": _git(git, "rev-parse", "main"),
        ".app.status.sync.status": "Synced",
        ".app.status.health.status": "Healthy",
        "toJson .app.status.summary.images": json.dumps(images),
        '(call .time.Now).Format "2006-01-02T15:04:05Z07:00"': datetime.now(
            UTC
        ).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }.items():
        body = body.replace("{{" + expression + "}}", value)
    assert "{{" not in body, body
    return body.encode(), {"X-MLOps-Token": GITOPS_HOOK_SECRET}


def _stages(deployment):
    return {s["name"]: s for s in deployment["pipeline_run"]["stages"]}


def _at_verify(deployment):
    """Every stage before verify has ended."""
    states = [s["state"] for s in deployment["pipeline_run"]["stages"]]
    names = [s["name"] for s in deployment["pipeline_run"]["stages"]]
    return deployment["state"] == "failed" or all(
        state not in ("pending", "running") for state in states[: names.index("verify")]
    )


def test_staging_on_main_then_production_through_a_reviewed_pull_request(
    stack, gitops, name
):
    git, github = gitops
    target = stack.admin.call(
        "mlops.deployment.target", "search", [("code", "=", "sysgit")]
    )
    shown = stack.admin.call(
        "mlops.deployment.target", "action_test_connection", target
    )
    assert shown["params"]["type"] == "success", shown["params"]["message"]

    approver = stack.user("sys_gitops_approver", [APPROVER])
    answer = stack.rest.upload(name, "1.0.0", samples.onnx_mlp(seed=11))
    assert answer.status_code == 202, answer.text
    version_id = answer.json()["version_id"]
    assert stack.rest.wait_settled([version_id])[version_id] == "validated"
    events_before = stack.rest.get("/events", limit=1).json()["next"]

    # staging: committed to main, then Argo CD reports it synced healthy
    answer = approver.post(
        f"/versions/{version_id}/deploy",
        {"reason": "staging through git", "target": "sysgit"},
    )
    assert answer.status_code == 202, answer.text
    staging_id = answer.json()["deployment_id"]
    staging = _wait(approver, f"/deployments/{staging_id}", _at_verify)
    assert staging["state"] == "deploying", staging
    config = yaml.safe_load(_git(git, "show", f"main:staging/{name}/config.yaml"))
    assert config["image"] == staging["image"]
    assert config["approval"]["reason"] == "staging through git"
    assert _stages(staging)["open_change"]["state"] == "skipped"
    answer = _hook(stack, "argocd", *_argocd(git, "staging", name, [staging["image"]]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] is True, answer.json()
    staging = _wait(
        approver,
        f"/deployments/{staging_id}",
        lambda d: d["state"] in ("active", "failed"),
    )
    assert staging["state"] == "active", staging
    assert "Argo CD" in _stages(staging)["verify"]["log"]

    # production: a branch and a pull request; the run waits
    github.answer(
        201, {"number": 12, "html_url": "https://github.com/acme/ops/pull/12"}
    )
    requests_before = len(github.requests)
    main_before = _git(git, "rev-parse", "main")
    answer = approver.post(
        f"/versions/{version_id}/promote",
        {"reason": "F1 up 3 points", "strategy": "blue_green", "target": "sysgit"},
    )
    assert answer.status_code == 202, answer.text
    production_id = answer.json()["deployment_id"]
    production = _wait(
        approver,
        f"/deployments/{production_id}",
        lambda d: d["pipeline_run"]["state"] in ("waiting", "failed"),
    )
    run = production["pipeline_run"]
    assert run["state"] == "waiting", production
    assert run["change"]["number"] == 12
    assert run["change"]["url"] == "https://github.com/acme/ops/pull/12"
    assert _git(git, "rev-parse", "main") == main_before
    opened = [
        r
        for r in github.requests[requests_before:]
        if r["method"] == "POST" and r["path"] == "/repos/acme/ops/pulls"
    ]
    assert len(opened) == 1, github.requests[requests_before:]
    pull = json.loads(opened[0]["body"])
    assert pull["head"] == run["change"]["branch"] and pull["base"] == "main"
    assert "F1 up 3 points" in pull["body"]
    events = stack.rest.get("/events", since=events_before, limit=500).json()["items"]
    assert any(
        e["type"] == "pipeline_run.waiting" and e["resource_id"] == run["id"]
        for e in events
    ), events
    shoot_as_admin(
        stack,
        [
            (f"{TARGETS}/{target[0]}", ".o_form_view", "gitops-target"),
            (f"{RUNS}/{run['id']}", ".o_form_view", "gitops-run-waiting"),
        ],
    )

    # the reviewer merges; GitHub's signed hook tells Odoo; a replay is refused
    _git(git, "update-ref", "refs/heads/main", run["change"]["commit"])
    body, signed = _github_hook(run["change"], 12, merged=True, by="platform-reviewer")
    answer = _hook(stack, "github", body, signed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] is True, answer.json()
    assert _hook(stack, "github", body, signed).status_code == 409
    production = _wait(approver, f"/deployments/{production_id}", _at_verify)
    assert _stages(production)["await_merge"]["state"] == "succeeded", production
    assert "platform-reviewer" in _stages(production)["await_merge"]["log"]
    answer = _hook(
        stack, "argocd", *_argocd(git, "production", name, [production["image"]])
    )
    assert answer.status_code == 200 and answer.json()["changed"], answer.text
    production = _wait(
        approver,
        f"/deployments/{production_id}",
        lambda d: d["state"] in ("active", "failed"),
    )
    assert production["state"] == "active", production
    version = approver.get(f"/versions/{version_id}").json()
    assert version["state"] == "production", version
