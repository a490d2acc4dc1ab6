"""``benchmarks/run gitops``: the gitops target against a real git server
(``git http-backend`` behind basic authentication, tools/gitserver.py),
Debian's docker-registry for the ModelCar and a recording server standing
for GitHub's API.

1. Approval to commit pushed, and approval to pull request opened: a real
   Odoo (queue_job runner at two channels), artifacts on a real S3; for
   each of N validated versions, the time from ``POST
   /versions/<id>/deploy`` until the remote's ``main`` holds the version's
   folder (a target committing directly), or until GitHub's API received
   the pull request (a target reviewing staging). The stages in between
   build and push the ModelCar. The baseline in the same run: the adapter
   alone committing and opening the same change (no Odoo, no queue, no
   image build).
2. 100 promotions in a row on one repository, through the adapter: each
   commit's time, the first ten against the last ten (history must not
   slow it), against git's command line doing the same commit and push
   from a clone of its own.

Its last line says whether the targets hold: approval to pushed and to
opened under 2 s at p50 and p95; the last ten promotions' median within
1.5x the first ten's.
"""

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import gitserver
import ociregistry
import serve
import testservers
import validation

ROUNDS = int(os.environ.get("MLOPS_BENCH_GITOPS_DEPLOYS", "8"))
PROMOTIONS = int(os.environ.get("MLOPS_BENCH_GITOPS_PROMOTIONS", "100"))
SECRET = "bench-hook-secret"  # noqa: S105 (a benchmark's hook secret)
PUBLIC = "https://models.example.com"


def _p95(values):
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def _cluster(oci, base):
    return {
        "namespace": "mlops",
        "registry": f"{oci.host}/mlops",
        "base_image": base,
        "registry_insecure": True,
    }


def _adapter_target(git, url, oci, base, github=None, review=()):
    targets = serve.adapter("targets")
    gitops = serve.adapter("target_gitops")
    cls = gitops.GitOpsTarget
    options = {
        "repository": url,
        "git_username": git.username,
        "public_url": PUBLIC,
        "review": list(review),
        "cluster": _cluster(oci, base),
    }
    if github:
        options.update(provider="github", project="acme/ops", api_url=github.url)
    return cls.build(
        targets.TargetContext(tempfile.mkdtemp(prefix="mlops-bench-gitops-"), "bench"),
        cls.parse_options(options),
        {"token": git.password, "hook_secret": SECRET},
    )


def _plan(index, environment="staging", model="m", image=None):
    targets = serve.adapter("targets")
    return targets.ServePlan(
        key=f"d{index}",
        route=f"c1-{model}-{environment}",
        model_name=model,
        version=f"1.0.{index}",
        environment=environment,
        artifact_uri=f"s3://bench/{model}/{index}/model.onnx",
        artifact_sha256=f"{index:064d}",
        image=image or f"registry.example.com/mlops/{model}@sha256:{index:064x}",
        labels={"model": model, "deployment": f"d{index}", "company": "1"},
    )


def _approval(index):
    targets = serve.adapter("targets")
    return targets.Approval(
        approved_by="Bench Approver",
        approved_at="2026-12-06 12:00:00",
        reason=f"benchmark {index}",
        validation="- format: passed",
        ledger=f"staging of m: 1.0.{index - 1} -> 1.0.{index}",
    )


def _adapter_alone(git, oci, base, github):
    """Seconds of the adapter alone: a commit to main; a commit to a
    branch and its pull request."""
    direct = _adapter_target(git, git.create("alone-direct"), oci, base)
    reviewed = _adapter_target(
        git, git.create("alone-reviewed"), oci, base, github, review=["staging"]
    )
    pushed, opened = [], []
    for index in range(1, ROUNDS + 1):
        plan = _plan(index, model=f"m{index}")
        started = time.perf_counter()
        direct.commit(plan, _approval(index))
        pushed.append(time.perf_counter() - started)
        github.answer(201, {"number": index, "html_url": f"https://x/pull/{index}"})
        started = time.perf_counter()
        committed = reviewed.commit(plan, _approval(index))
        reviewed.open_change(plan, _approval(index), committed)
        opened.append(time.perf_counter() - started)
    return pushed, opened


def _bare(git, name, *args):
    return subprocess.run(
        ["git", "--git-dir", str(git.bare(name)), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def through_odoo(git, oci, base, github, work):
    """Seconds from the approval call to the commit on the remote's main
    (target ``direct``), and to the pull request at GitHub's API (target
    ``reviewed``)."""
    direct_url = git.create("odoo-direct")
    reviewed_url = git.create("odoo-reviewed")
    secrets = {}
    for code in ("DIRECT", "REVIEWED"):
        secrets.update(
            {
                f"MLOPS_TARGET_{code}_TOKEN": git.password,
                f"MLOPS_TARGET_{code}_HOOK_SECRET": SECRET,
                f"MLOPS_TARGET_{code}_REGISTRY_USERNAME": oci.username,
                f"MLOPS_TARGET_{code}_REGISTRY_PASSWORD": oci.password,
            }
        )
    artifacts = serve._artifacts()
    stack = validation._Stack(work / "odoo", env=secrets)
    pushed, opened = [], []
    try:
        for code, url, extra in (
            ("direct", direct_url, {}),
            (
                "reviewed",
                reviewed_url,
                {
                    "provider": "github",
                    "project": "acme/ops",
                    "api_url": github.url,
                    "review": ["staging"],
                },
            ),
        ):
            stack.admin.call(
                "mlops.deployment.target",
                "create",
                {
                    "name": code.title(),
                    "code": code,
                    "kind": "gitops",
                    "options": {
                        "repository": url,
                        "git_username": git.username,
                        "public_url": PUBLIC,
                        "cluster": _cluster(oci, base),
                        **extra,
                    },
                },
            )
        import deploy  # noqa: PLC0415 - the benchmarks folder is on the path

        approver = deploy._approver(stack)
        models = {}
        for index in range(2 * ROUNDS):
            name = f"bench-gitops-{uuid.uuid4().hex[:6]}"
            answer = stack.rest.upload(name, "1.0.0", artifacts.onnx_mlp(seed=index))
            answer.raise_for_status()
            models[answer.json()["version_id"]] = name
        settled = stack.rest.wait_settled(list(models))
        assert set(settled.values()) == {"validated"}, settled
        ids = list(models)
        for number, version_id in enumerate(ids):
            code = "direct" if number < ROUNDS else "reviewed"
            if code == "reviewed":
                github.answer(
                    201, {"number": number, "html_url": f"https://x/pull/{number}"}
                )
            requests_before = len(github.requests)
            started = time.perf_counter()
            answer = approver.post(
                f"/versions/{version_id}/deploy",
                {"reason": "benchmark", "target": code},
            )
            answer.raise_for_status()
            deadline = time.monotonic() + 120
            while True:
                if code == "direct":
                    done = (
                        _bare(
                            git,
                            "odoo-direct",
                            "cat-file",
                            "-e",
                            f"main:staging/{models[version_id]}/config.yaml",
                        ).returncode
                        == 0
                    )
                else:
                    done = any(
                        r["method"] == "POST" and r["path"].endswith("/pulls")
                        for r in github.requests[requests_before:]
                    )
                if done:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{code}: version {version_id} never got there")
                time.sleep(0.01)
            (pushed if code == "direct" else opened).append(
                time.perf_counter() - started
            )
    finally:
        stack.close()
    return pushed, opened


def promotions(git, oci, base):
    """Each of PROMOTIONS commits' seconds on one repository, through the
    adapter; and git's command line doing the same from its own clone."""
    target = _adapter_target(git, git.create("promotions"), oci, base)
    ours = []
    for index in range(1, PROMOTIONS + 1):
        plan = _plan(index, environment="production", model="sentiment")
        started = time.perf_counter()
        target.commit(plan, _approval(index))
        ours.append(time.perf_counter() - started)
    url = git.create("cli")
    clone = Path(tempfile.mkdtemp(prefix="mlops-bench-cli-")) / "clone"
    environ = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    authed = url.replace("http://", f"http://{git.username}:{git.password}@")

    def cli(*args):
        subprocess.run(
            ["git", *args], cwd=clone, env=environ, check=True, capture_output=True
        )

    subprocess.run(
        ["git", "clone", "--quiet", authed, str(clone)],
        env=environ,
        check=True,
        capture_output=True,
    )
    folder = clone / "production" / "sentiment"
    folder.mkdir(parents=True)
    plain = []
    for index in range(1, PROMOTIONS + 1):
        plan = _plan(index, environment="production", model="sentiment")
        files = target.files(plan, _approval(index))
        started = time.perf_counter()
        for name, text in files.items():
            (folder / name).write_text(text)
        cli("add", "--all")
        cli("commit", "--quiet", "-m", f"Deploy sentiment 1.0.{index}")
        cli("push", "--quiet", "origin", "main")
        plain.append(time.perf_counter() - started)
    return ours, plain


def bench_gitops():
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-gitops-"))
    missed = []
    with (
        gitserver.GitServer(work / "git") as git,
        ociregistry.OciRegistry(work / "registry") as oci,
        testservers.RecordingServer() as github,
    ):
        registry = serve.adapter("oci_registry").Registry(
            oci.host, oci.username, oci.password, insecure=True
        )
        base = oci.push_base(registry, serve.adapter("modelcar"))
        print(f"{PROMOTIONS} promotions on one repository", flush=True)
        ours, plain = promotions(git, oci, base)
        print("the adapter alone: commit, and commit + pull request", flush=True)
        alone_pushed, alone_opened = _adapter_alone(git, oci, base, github)
        print(
            "starting Odoo (queue_job runner at 2 channels) and SeaweedFS", flush=True
        )
        pushed, opened = through_odoo(git, oci, base, github, work)

    print(f"\napproval -> change at the remote, {ROUNDS} versions each")
    for label, times, alone in (
        ("commit pushed to main", pushed, alone_pushed),
        ("pull request opened", opened, alone_opened),
    ):
        p50, p95 = statistics.median(times), _p95(times)
        print(
            f"  {label:22s} through Odoo p50 {p50:5.2f} s  p95 {p95:5.2f} s  "
            f"worst {max(times):5.2f} s;  adapter alone p50 "
            f"{statistics.median(alone):5.3f} s  p95 {_p95(alone):5.3f} s"
        )
        if p50 >= 2 or p95 >= 2:
            missed.append(f"{label} p50 {p50:.2f} s, p95 {p95:.2f} s (target < 2 s)")
    first, last = statistics.median(ours[:10]), statistics.median(ours[-10:])
    cli_first, cli_last = statistics.median(plain[:10]), statistics.median(plain[-10:])
    print(f"\n{PROMOTIONS} promotions in a row on one repository (medians)")
    print(
        f"  the adapter        first ten {first * 1000:6.0f} ms   last ten "
        f"{last * 1000:6.0f} ms   ({last / first:.2f}x); all {sum(ours):.1f} s"
    )
    print(
        f"  git's command line first ten {cli_first * 1000:6.0f} ms   last ten "
        f"{cli_last * 1000:6.0f} ms   ({cli_last / cli_first:.2f}x); all "
        f"{sum(plain):.1f} s"
    )
    print(
        f"  the adapter at {last / cli_last:.2f}x git's command line's time "
        "(it also fetches and checks the remote first)"
    )
    if last > 1.5 * first:
        missed.append(f"the last ten at {last / first:.2f}x the first ten (<= 1.5x)")
    print(
        "targets (approval->pushed and ->opened p50 and p95 < 2 s; the last ten "
        "promotions within 1.5x the first ten): "
        + ("all met" if not missed else "MISSED: " + "; ".join(missed))
    )
