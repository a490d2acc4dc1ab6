"""The ``gitops`` kind (adapters/target_gitops.py) against real parts: a git
server (``git http-backend`` behind basic auth), the OCI registry its
ModelCar goes to, the kube-apiserver it watches (the test playing Argo CD:
it applies what was committed) and recording servers standing for GitHub's
and GitLab's APIs, checked against their documented request shapes."""

import contextlib
import dataclasses
import hashlib
import itertools
import json
import subprocess
from datetime import UTC, datetime, timedelta

import gitserver
import kubernetes_validate
import pytest
import testservers
import yaml
from kubeserver import Kubelet
from test_image_signing import _keys

from odoo.addons.creativeflow_mlops.adapters import git_hosting
from odoo.addons.creativeflow_mlops.adapters.target_gitops import GitOpsTarget
from odoo.addons.creativeflow_mlops.adapters.targets import (
    Approval,
    OptionsInvalid,
    ServePlan,
    StageNotRun,
    TargetContext,
    TargetFailed,
    TargetUnavailable,
)

SECRET = "hook-secret-0123"  # noqa: S105 (a test's hook secret)
_numbers = itertools.count(1)
APPROVAL = Approval(
    approved_by="Ada Approver",
    approved_at="2026-12-06 10:00:00",
    reason="Better F1 on the holdout set",
    validation="- format: passed\n- security_artifact: passed",
    ledger="production of mlp: 1.0.0 -> 1.1.0 (promotion, rolling)",
)


@pytest.fixture(scope="module")
def git():
    with gitserver.GitServer() as server:
        yield server


@pytest.fixture
def github():
    with testservers.RecordingServer() as server:
        yield server


def _options(url, registry, **values):
    base = {
        "repository": url,
        "public_url": "https://models.example.com",
        "git_username": gitserver.USERNAME,
        "cluster": {
            "namespace": "mlops",
            "registry": f"{registry.host}/mlops",
            "base_image": registry.base,
            "registry_insecure": True,
            "image_pull_secret": "team-registry",
        },
    }
    base.update(values)
    return GitOpsTarget.parse_options(base)


def _target(tmp_path, git, registry, url, token=None, **values):
    return GitOpsTarget.build(
        TargetContext(str(tmp_path / "target"), owner="gitopstest"),
        _options(url, registry, **values),
        {
            "token": token or git.password,
            "registry_username": registry.username,
            "registry_password": registry.password,
            "hook_secret": SECRET,
        },
    )


def _plan(environment="staging", model="mlp", **values):
    number = next(_numbers)
    base = {
        "key": f"d{number}",
        "route": f"c1-{model}-{environment}",
        "model_name": model,
        "version": f"1.0.{number}",
        "environment": environment,
        "labels": {"model": model, "deployment": f"d{number}", "company": "1"},
    }
    base.update(values)
    return ServePlan(**base)


def _built(target, plan, tmp_path):
    """The ModelCar built and pushed to the real registry."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"bytes of a model " + plan.key.encode())
    plan = dataclasses.replace(
        plan, artifact_sha256=hashlib.sha256(model.read_bytes()).hexdigest()
    )
    with pytest.raises(StageNotRun):
        target.fetch_artifact(plan, None)
    target.build_image(plan, lambda: contextlib.nullcontext(str(model)))
    image, _log = target.push_image(plan)
    return dataclasses.replace(plan, image=image)


def _show(git, name, path, ref="main"):
    done = subprocess.run(
        ["git", "--git-dir", str(git.bare(name)), "show", f"{ref}:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def test_options_are_checked(git, oci_registry):
    url = "https://git.example.com/ops.git"
    with pytest.raises(OptionsInvalid, match="repository: required"):
        GitOpsTarget.parse_options({"public_url": "https://m"})
    for values, problem in (
        ({"folder": "../{model}"}, "folder"),
        ({"folder": "{model}"}, "folder"),
        ({"provider": "github"}, "project"),
        ({"provider": "bitbucket"}, "provider"),
        ({"review": ["canary"]}, "review"),
        ({"repository": "ftp://x"}, "repository"),
        ({"cluster": {"model_source": "s3"}}, "cluster.model_source"),
        ({"cluster": {"bogus": 1}}, "cluster.bogus"),
    ):
        with pytest.raises(OptionsInvalid, match=problem):
            _options(url, oci_registry, **values)
    options = _options(url, oci_registry, provider="github", project="acme/ops")
    assert GitOpsTarget.required_secrets(options) == ("token", "hook_secret")
    # no cluster to watch: Argo CD's reports, with the hook secret, verify
    ssh = _options("git@github.com:acme/ops.git", oci_registry)
    assert GitOpsTarget.required_secrets(ssh) == ("ssh_key", "hook_secret")
    watched = _options(
        "git@github.com:acme/ops.git",
        oci_registry,
        cluster={
            "server_url": "https://k",
            "registry": "r.example.com/m",
            "base_image": "r.example.com/base/busybox:1",
        },
    )
    assert GitOpsTarget.required_secrets(watched) == ("ssh_key", "cluster_token")


def test_staging_is_committed_to_main_with_its_config(git, oci_registry, tmp_path):
    url = git.create(f"staging{next(_numbers)}")
    name = url.rsplit("/", 1)[1][: -len(".git")]
    target = _target(tmp_path, git, oci_registry, url)
    plan = _built(target, _plan(), tmp_path)
    committed = target.commit(plan, APPROVAL)
    assert committed.branch == "main" and not committed.review
    assert committed.image == plan.image
    config = yaml.safe_load(_show(git, name, "staging/mlp/config.yaml"))
    assert config["image"] == plan.image
    assert config["digest"] == plan.image.rpartition("@")[2]
    assert config["deployment"] == plan.key and config["namespace"] == "mlops"
    assert config["approval"]["reason"] == APPROVAL.reason
    objects = list(yaml.safe_load_all(_show(git, name, "staging/mlp/manifests.yaml")))
    assert [o["kind"] for o in objects] == ["Deployment", "Service"]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "mlops"
        kubernetes_validate.validate(obj, "1.30", strict=True)
    pod = objects[0]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == plan.image
    assert pod["imagePullSecrets"] == [{"name": "team-registry"}]
    # the route's Service selects the colour: the manifests route it
    assert objects[1]["spec"]["selector"]["mlops.creativeflow.io/colour"] == plan.key
    # nothing secret reaches the repository
    for path in ("staging/mlp/config.yaml", "staging/mlp/manifests.yaml"):
        text = _show(git, name, path)
        assert oci_registry.password not in text and git.password not in text
    log = subprocess.run(
        ["git", "--git-dir", str(git.bare(name)), "log", "-1", "--format=%B"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert APPROVAL.reason in log and f"Mlops-Deployment: {plan.key}" in log
    # no review asked for staging
    with pytest.raises(StageNotRun, match="directly"):
        target.open_change(plan, APPROVAL, committed)
    # committed again (the job retried): nothing new is pushed
    again = target.commit(plan, APPROVAL)
    assert again.sha == committed.sha and "already there" in again.log
    # verify without a cluster to watch: Argo CD's report is awaited
    status = target.verify(plan)
    assert not status.ready and not status.failed and "Argo CD" in status.message
    # another deployment's plan is told the folder holds something else
    other = dataclasses.replace(plan, key="d999", image=plan.image + "x")
    assert target.verify(other).failed
    # undeploy: the folder goes, in a commit of its own
    target.delete(other)  # not what the folder holds: nothing happens
    assert _show(git, name, "staging/mlp/config.yaml")
    target.delete(plan)
    assert _show(git, name, "staging/mlp/config.yaml") is None


def test_production_opens_a_pull_request_on_github(git, oci_registry, github, tmp_path):
    url = git.create(f"prod{next(_numbers)}")
    name = url.rsplit("/", 1)[1][: -len(".git")]
    target = _target(
        tmp_path,
        git,
        oci_registry,
        url,
        provider="github",
        project="acme/ops",
        api_url=github.url,
    )
    plan = _built(target, _plan("production"), tmp_path)
    committed = target.commit(plan, APPROVAL)
    assert committed.review and committed.branch.startswith("mlops/production-mlp-")
    # main is untouched until the merge; the branch holds the change
    assert _show(git, name, "production/mlp/config.yaml") is None
    assert _show(git, name, "production/mlp/config.yaml", committed.branch)
    github.answer(
        201, {"number": 17, "html_url": "https://github.com/acme/ops/pull/17"}
    )
    opened = target.open_change(plan, APPROVAL, committed)
    assert (opened.number, opened.url) == (17, "https://github.com/acme/ops/pull/17")
    (sent,) = github.requests
    assert (sent["method"], sent["path"]) == ("POST", "/repos/acme/ops/pulls")
    assert sent["headers"]["accept"] == "application/vnd.github+json"
    assert sent["headers"]["authorization"] == f"Bearer {git.password}"
    assert sent["headers"]["x-github-api-version"] == "2022-11-28"
    body = json.loads(sent["body"])
    assert set(body) == {"title", "head", "base", "body"}
    assert (body["head"], body["base"]) == (committed.branch, "main")
    for part in (APPROVAL.reason, APPROVAL.validation, APPROVAL.ledger, plan.image):
        assert part in body["body"]
    # the job tried again: GitHub says one is open (422), and it is found
    github.answer(422, {"message": "Validation Failed"})
    github.answer(200, [{"number": 17, "html_url": "https://x/17"}])
    again = target.open_change(plan, APPROVAL, committed)
    assert again.number == 17 and "open already" in again.log
    found = github.requests[-1]
    assert found["method"] == "GET" and "head=acme%3A" in found["path"]
    # GitHub out of reach: worth trying again
    github.answer(502, b"bad gateway")
    with pytest.raises(TargetUnavailable):
        target.open_change(plan, APPROVAL, committed)
    # withdrawn: the pull request closed, the branch gone
    target.close_change(17, committed.branch)
    closing = github.requests[-1]
    assert (closing["method"], closing["path"]) == ("PATCH", "/repos/acme/ops/pulls/17")
    assert json.loads(closing["body"]) == {"state": "closed"}
    assert _show(git, name, "production/mlp/config.yaml", committed.branch) is None


def test_gitlab_merge_requests_as_documented(git, oci_registry, tmp_path):
    url = git.create(f"gitlab{next(_numbers)}")
    with testservers.RecordingServer() as gitlab:
        target = _target(
            tmp_path,
            git,
            oci_registry,
            url,
            provider="gitlab",
            project="platform/ops",
            api_url=gitlab.url,
        )
        plan = _built(target, _plan("production"), tmp_path)
        committed = target.commit(plan, APPROVAL)
        gitlab.answer(201, {"iid": 5, "web_url": "https://gitlab/mr/5"})
        opened = target.open_change(plan, APPROVAL, committed)
        assert opened.number == 5
        (sent,) = gitlab.requests
        assert sent["path"] == "/api/v4/projects/platform%2Fops/merge_requests"
        assert sent["headers"]["private-token"] == git.password
        form = dict(pair.split("=", 1) for pair in sent["body"].decode().split("&"))
        assert form["source_branch"].replace("%2F", "/") == committed.branch
        assert form["target_branch"] == "main"
        assert form["remove_source_branch"] == "true"
        target.close_change(5, committed.branch)
        closing = gitlab.requests[-1]
        assert closing["method"] == "PUT"
        assert closing["body"] == b"state_event=close"


def test_the_watched_cluster_reports_the_new_digest_ready(
    git, oci_registry, kube_server, tmp_path
):
    namespace = f"gitops{next(_numbers)}"
    kube_server.create_namespace(namespace)
    url = git.create(namespace)
    target = GitOpsTarget.build(
        TargetContext(str(tmp_path / "target"), owner="gitopstest"),
        GitOpsTarget.parse_options(
            {
                "repository": url,
                "public_url": "https://models.example.com",
                "git_username": gitserver.USERNAME,
                "cluster": {
                    "namespace": namespace,
                    "server_url": kube_server.url,
                    "ca_file": kube_server.ca_file,
                    "registry": f"{oci_registry.host}/mlops",
                    "base_image": oci_registry.base,
                    "registry_insecure": True,
                    "image_pull_secret": "team-registry",
                },
            }
        ),
        {
            "token": git.password,
            "cluster_token": kube_server.admin_token,
            "registry_username": oci_registry.username,
            "registry_password": oci_registry.password,
        },
    )
    plan = _built(target, _plan(), tmp_path)
    target.commit(plan, APPROVAL)
    status = target.verify(plan)
    # committed, not synced yet: waiting, not failed
    assert not status.ready and not status.failed
    # Argo CD played: what the folder holds, applied as it is
    manifests = _show(git, namespace, "staging/mlp/manifests.yaml")
    for obj in yaml.safe_load_all(manifests):
        path = {
            "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments",
            "Service": f"/api/v1/namespaces/{namespace}/services",
        }[obj["kind"]]
        kube_server.json("POST", path, obj)
    Kubelet(kube_server, node=f"node-{namespace}").register().run(
        namespace, expect=1, timeout=30
    )
    for _try in range(100):
        status = target.verify(plan)
        if status.ready:
            break
        import time  # noqa: PLC0415

        time.sleep(0.2)
    assert status.ready, status.message
    assert plan.image in status.message
    info = target.check()
    assert set(info) == {"repository", "cluster"}


def test_a_rollback_is_a_revert_commit(git, oci_registry, tmp_path):
    url = git.create(f"revert{next(_numbers)}")
    name = url.rsplit("/", 1)[1][: -len(".git")]
    target = _target(tmp_path, git, oci_registry, url)
    first = _built(target, _plan("production"), tmp_path)
    target.commit(first, APPROVAL)
    second = _built(target, _plan("production"), tmp_path)
    brought = target.commit(second, APPROVAL)
    rollback = dataclasses.replace(second, key="d900", image="")
    reverted = target.commit(
        rollback,
        dataclasses.replace(APPROVAL, kind="rollback", revert=brought.sha),
    )
    assert reverted.image == first.image and not reverted.review
    config = yaml.safe_load(_show(git, name, "production/mlp/config.yaml"))
    assert config["image"] == first.image
    message = subprocess.run(
        ["git", "--git-dir", str(git.bare(name)), "log", "-1", "--format=%B"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"This reverts commit {brought.sha}." in message


def test_wrong_credentials_are_told_before_any_deploy(git, oci_registry, tmp_path):
    url = git.create(f"creds{next(_numbers)}")
    target = _target(tmp_path, git, oci_registry, url, token="wrong")  # noqa: S106
    with pytest.raises(TargetFailed, match="refused the credentials"):
        target.check()
    assert "main at" in _target(tmp_path, git, oci_registry, url).check()["repository"]


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


def _github_hook(merged=True, at=None, number=17, action="closed"):
    at = at or datetime.now(UTC)
    body = json.dumps(
        {
            "action": action,
            "number": number,
            "pull_request": {
                "number": number,
                "merged": merged,
                "closed_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "merge_commit_sha": "a" * 40 if merged else None,
                "head": {"ref": "mlops/production-mlp-d7-x", "sha": "b" * 40},
                "merged_by": {"login": "octocat"} if merged else None,
            },
            "repository": {"full_name": "acme/ops"},
            "sender": {"login": "octocat"},
        }
    ).encode()
    headers = {
        "x-github-event": "pull_request",
        "x-github-delivery": f"delivery-{next(_numbers)}",
        "x-hub-signature-256": git_hosting.github_signature(SECRET, body),
    }
    return headers, body


def test_github_hooks_are_verified():
    headers, body = _github_hook()
    event = git_hosting.parse_github(headers, body, SECRET)
    assert (event.outcome, event.number, event.by) == ("merged", 17, "octocat")
    assert event.merge_commit == "a" * 40
    assert event.branch == "mlops/production-mlp-d7-x"
    closed = git_hosting.parse_github(*_github_hook(merged=False), SECRET)
    assert closed.outcome == "closed"
    opened = git_hosting.parse_github(*_github_hook(action="opened"), SECRET)
    assert opened.outcome == "other"
    # the documented example of GitHub's "Validating webhook deliveries"
    example = git_hosting.github_signature(
        "It's a Secret to Everybody", b"Hello, World!"
    )
    assert example == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    forged = dict(headers, **{"x-hub-signature-256": "sha256=" + "0" * 64})
    for bad, why in (
        ((forged, body, SECRET), "does not match"),
        ((headers, body + b" ", SECRET), "does not match"),
        ((headers, body, "other"), "does not match"),
        ((headers, body, None), "no hook secret"),
        ((dict(headers, **{"x-github-delivery": ""}), body, SECRET), "Delivery"),
    ):
        with pytest.raises(git_hosting.HookRefused, match=why):
            git_hosting.parse_github(*bad)
    stale = _github_hook(at=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(git_hosting.HookRefused, match="stale"):
        git_hosting.parse_github(*stale, SECRET)


def test_gitlab_hooks_are_verified():
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "object_kind": "merge_request",
            "user": {"username": "root"},
            "project": {"id": 3, "path_with_namespace": "platform/ops"},
            "object_attributes": {
                "iid": 5,
                "action": "merge",
                "state": "merged",
                "source_branch": "mlops/production-mlp-d9-x",
                "merge_commit_sha": "c" * 40,
                "updated_at": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
            },
        }
    ).encode()
    headers = {"x-gitlab-token": SECRET, "x-gitlab-event-uuid": "u-1"}
    event = git_hosting.parse_gitlab(headers, body, SECRET)
    assert (event.outcome, event.number, event.project) == ("merged", 5, "platform/ops")
    with pytest.raises(git_hosting.HookRefused, match="X-Gitlab-Token"):
        git_hosting.parse_gitlab(dict(headers, **{"x-gitlab-token": "x"}), body, SECRET)
    with pytest.raises(git_hosting.HookRefused, match="not JSON"):
        git_hosting.parse_gitlab(headers, b"{", SECRET)


def _argocd_report(**values):
    body = {
        "application": "mlops-production-mlp",
        "path": "production/mlp",
        "revision": "a" * 40,
        "sync": "Synced",
        "health": "Healthy",
        "images": ["nvcr.io/nvidia/tritonserver:25.01-py3", "r/m@sha256:" + "1" * 64],
        "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **values,
    }
    return json.dumps(body).encode()


def test_argocd_reports_are_checked():
    headers = {"x-mlops-token": SECRET}
    report = git_hosting.parse_argocd(headers, _argocd_report(), SECRET)
    assert (report.path, report.health, report.sync) == (
        "production/mlp",
        "Healthy",
        "Synced",
    )
    assert "r/m@sha256:" + "1" * 64 in report.images
    with pytest.raises(git_hosting.HookRefused, match="X-MLOps-Token"):
        git_hosting.parse_argocd({"x-mlops-token": "nope"}, _argocd_report(), SECRET)
    with pytest.raises(git_hosting.HookRefused, match="no hook secret"):
        git_hosting.parse_argocd(headers, _argocd_report(), "")
    stale = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(git_hosting.HookRefused, match="stale"):
        git_hosting.parse_argocd(headers, _argocd_report(sent_at=stale), SECRET)
    for values, problem in (
        ({"images": "r/m"}, "images"),
        ({"images": [1]}, "images"),
        ({"path": ""}, "path"),
        ({"health": None}, "health"),
    ):
        with pytest.raises(git_hosting.HookMalformed, match=problem):
            git_hosting.parse_argocd(headers, _argocd_report(**values), SECRET)


def test_images_are_signed_and_one_that_does_not_verify_is_never_committed(
    git, oci_registry, tmp_path
):
    url = git.create(f"signed{next(_numbers)}")
    name = url.rsplit("/", 1)[1][: -len(".git")]
    private, public = _keys()
    _private, stranger = _keys()
    options = _options(url, oci_registry)
    cluster = {**options.cluster, "verify_signatures": True}
    assert GitOpsTarget.required_secrets(
        _options(url, oci_registry, cluster=cluster)
    ) == ("token", "hook_secret", "signing_public_key")

    def target(name, **secrets):
        return GitOpsTarget.build(
            TargetContext(str(tmp_path / name), owner="gitopstest"),
            _options(url, oci_registry, cluster=cluster),
            {
                "token": git.password,
                "registry_username": oci_registry.username,
                "registry_password": oci_registry.password,
                **secrets,
            },
        )

    def pushed(target, plan):
        model = tmp_path / "model.onnx"
        model.write_bytes(b"a signed model " + plan.key.encode())
        plan = dataclasses.replace(
            plan, artifact_sha256=hashlib.sha256(model.read_bytes()).hexdigest()
        )
        target.build_image(plan, lambda: contextlib.nullcontext(str(model)))
        image, log = target.push_image(plan)
        return dataclasses.replace(plan, image=image), log

    signing = target("signing", signing_key=private, signing_public_key=public)
    plan, log = pushed(signing, _plan())
    assert "signed sha256-" in log and ".sig" in log
    assert "SBOM sha256-" in log and ".sbom" in log
    committed = signing.commit(plan, APPROVAL)
    assert f"signature of {plan.image.rpartition('@')[2]} verified" in committed.log
    head = _show(git, name, "staging/mlp/config.yaml")

    # verified with another key: refused, nothing committed
    with pytest.raises(TargetFailed, match="no signature of .* verifies"):
        target("stranger", signing_public_key=stranger).commit(
            dataclasses.replace(plan, key="d999", version="9.9.9"), APPROVAL
        )
    # an image pushed unsigned (no signing key): refused
    unsigned = target("unsigned", signing_public_key=public)
    plan, log = pushed(unsigned, _plan())
    assert "signed" not in log and "SBOM" in log
    with pytest.raises(TargetFailed, match="is not signed"):
        unsigned.commit(plan, APPROVAL)
    assert _show(git, name, "staging/mlp/config.yaml") == head
