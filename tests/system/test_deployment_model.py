"""Deployments as a state machine under concurrent callers: a model-based
test against the running product.

A seeded generator writes a program of steps; each step is one to three
actions sent at the same moment from separate callers (REST for deploy,
promote, PATCH, rollback and DELETE; the web client's JSON-RPC for a
canary's promote and abort, archive and the supervisor's run now; a
SIGKILL for a model server; a pause). A/B experiments join them from a
second stream of the same seed (so the deployment program a kept seed
replays is unchanged): one is made and started on two versions, or
stopped, as one more caller of a step. Every answer must be one the
contract names (2xx, or a JSON 409/422 saying why), never a 5xx or an HTML
page. After each step the invariants are checked on one snapshot of the
database (read-only, REPEATABLE READ: an observer, not a driver); every
few steps, once the pipelines are done, the router must serve what
``/endpoints`` announces.

A seed is replayable: ``MLOPS_MODEL_SEED=<seed> bin/test
tests/system/test_deployment_model.py`` runs its program again (the
threads' interleaving is the machine's). Seeds that found a defect are kept
in ``REGRESSION_SEEDS``; each run adds one new seed, printed when it fails.
"""

import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import devstack
import pytest
import requests
import samples
import systemstack

APPROVER = "creativeflow_mlops.group_mlops_approver"
SUPERVISOR = "creativeflow_mlops.ir_cron_runtime_supervisor"
# seeds whose programs found a defect (see the module's docstring):
# 6622291: a supervisor pass wrote the router's table from a snapshot older
# than a pipeline's switch, and staging's route was gone until the next one;
# 69573073: a table published while a killed server was down dropped its
# route, and once the watchdog had it back nothing published it again
REGRESSION_SEEDS = [20261205, 6622291, 69573073]
STEPS = int(os.environ.get("MLOPS_MODEL_STEPS", "60"))
SETTLE_EVERY = 10
# how long a deployment may stay requested or deploying
DEADLINE_SECONDS = 180
BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}
# what an action may answer: its success, or a refusal the contract names
REST_ANSWERS = {200, 202, 204, 404, 409, 422}
SERVING = ("active", "rolling_out_canary")
# the colours an experiment's arm may be served by
ARM_STATES = ("active", "inactive_bluegreen")
# what the web client's JSON-RPC may answer instead of doing it
REFUSALS = {
    "odoo.addons.creativeflow_mlops.exceptions.TransitionNotAllowed",
    "odoo.addons.creativeflow_mlops.exceptions.Conflict",
    "odoo.addons.creativeflow_mlops.exceptions.InvalidInput",
    "odoo.exceptions.UserError",
}


def _fresh_seed():
    chosen = os.environ.get("MLOPS_MODEL_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(10**8)


@pytest.fixture(scope="module")
def world(stack, invoke):
    return configure(stack, invoke)


def configure(stack, invoke):
    """Fast canaries and an approver: what every program needs."""
    for name, value in {
        "canary_steps": "50,100",
        "canary_step_seconds": 2,
        "canary_min_requests": 1,
        "canary_inconclusive_tries": 2,
        "benchmark_runs": 1,
    }.items():
        stack.admin.call(
            "ir.config_parameter", "set_param", f"creativeflow_mlops.{name}", str(value)
        )
    approver = stack.user("mbt_approver", [APPROVER])
    return stack, approver, invoke


class Program:
    """One seed's run: the model it owns, its callers, and what it saw.
    Subclasses run the same lifecycle on another target: their actions
    (``KINDS``, ``extra_action``), what a deploy asks (``DEPLOY``) and how
    what serves is checked (``serving_disagrees``)."""

    # (action, weight)
    KINDS = (
        ("deploy", 5),
        ("promote_blue_green", 4),
        ("promote_canary", 3),
        ("rollback", 3),
        ("undeploy", 3),
        ("patch", 2),
        ("canary_promote", 2),
        ("canary_abort", 2),
        ("archive", 1),
        ("kill", 1),
        ("supervise", 1),
        ("pause", 3),
    )
    # the actions on one deployment: a deploy instead when there is none
    ON_DEPLOYMENT = {
        "rollback",
        "undeploy",
        "patch",
        "canary_promote",
        "canary_abort",
        "kill",
    }
    DEPLOY = {}

    def __init__(self, world, seed):
        self.stack, self.approver, self.invoke = world
        self.seed = seed
        self.random = random.Random(seed)
        # experiments draw from their own stream: the deployment program of
        # a kept seed stays what it was
        self.experiment_random = random.Random(seed ^ 0x5EED)
        self.model_id = None
        self.experiments = {}
        self.name = f"mbt-{seed}"
        self.uploaded = 0
        self.seen = Counter()
        self.log = []
        self.killed = False
        self.db = devstack.connect(self.stack.db_settings, self.stack.dbname)
        self.db.set_session(isolation_level="REPEATABLE READ", readonly=True)
        self.cron_id = self.stack.record_id(SUPERVISOR)

    # -- versions -----------------------------------------------------------

    def upload(self, count=1):
        ids = []
        for _ in range(count):
            self.uploaded += 1
            answer = self.stack.rest.upload(
                self.name,
                f"1.{self.uploaded}.0",
                samples.onnx_mlp(seed=self.seed % 1000 + self.uploaded),
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["version_id"])
        states = self.stack.rest.wait_settled(ids, timeout=300)
        assert set(states.values()) == {"validated"}, states

    # -- the database, one snapshot ------------------------------------------

    def snapshot(self):
        with self.db.cursor() as cr:
            cr.execute("SELECT id FROM mlops_model WHERE name = %s", [self.name])
            (model_id,) = cr.fetchone()
            cr.execute(
                "SELECT id, version, state FROM mlops_model_version "
                "WHERE model_id = %s",
                [model_id],
            )
            versions = {i: {"version": v, "state": s} for i, v, s in cr.fetchall()}
            cr.execute(
                "SELECT id, version_id, environment, state, traffic_percent, "
                "extract(epoch FROM now() - create_date), drift "
                "FROM mlops_deployment WHERE model_id = %s",
                [model_id],
            )
            deployments = {
                i: {
                    "version_id": v,
                    "environment": e,
                    "state": s,
                    "traffic": t,
                    "age": float(a),
                    "drift": drift,
                }
                for i, v, e, s, t, a, drift in cr.fetchall()
            }
            cr.execute(
                "SELECT deployment_id, state FROM mlops_pipeline_run "
                "WHERE model_id = %s",
                [model_id],
            )
            runs = defaultdict(list)
            for deployment_id, state in cr.fetchall():
                runs[deployment_id].append(state)
            cr.execute(
                "SELECT environment, deployment_id FROM mlops_promotion "
                "WHERE model_id = %s AND live_until IS NULL",
                [model_id],
            )
            ledger = cr.fetchall()
            cr.execute(
                "SELECT e.id, e.environment, e.state, a.version_id, a.deployment_id, "
                "d.state FROM mlops_experiment e "
                "JOIN mlops_experiment_arm a ON a.experiment_id = e.id "
                "LEFT JOIN mlops_deployment d ON d.id = a.deployment_id "
                "WHERE e.model_id = %s ORDER BY e.id, a.id",
                [model_id],
            )
            experiments = defaultdict(lambda: {"arms": []})
            for e, environment, state, version_id, d, d_state in cr.fetchall():
                experiments[e].update(environment=environment, state=state)
                experiments[e]["arms"].append((version_id, d, d_state))
        self.db.rollback()
        self.model_id = model_id
        self.experiments = dict(experiments)
        return versions, deployments, runs, ledger

    def check(self, when):
        """The invariants, on one snapshot."""
        versions, deployments, runs, ledger = self.snapshot()
        problems = []

        def expect(condition, message):
            if not condition:
                problems.append(message)

        open_lines = defaultdict(list)
        for environment, deployment_id in ledger:
            open_lines[environment].append(deployment_id)
        for environment in ("staging", "production"):
            here = {
                i: d for i, d in deployments.items() if d["environment"] == environment
            }
            states = Counter(d["state"] for d in here.values())
            expect(states["active"] <= 1, f"{environment}: {states['active']} active")
            expect(
                states["rolling_out_canary"] <= (1 if states["active"] else 0),
                f"{environment}: a canary without an active deployment beside it",
            )
            serving = [d for d in here.values() if d["state"] in SERVING]
            expect(
                not serving or sum(d["traffic"] for d in serving) == 100,
                f"{environment}: the route carries "
                f"{sum(d['traffic'] for d in serving)} %",
            )
            expect(
                all(
                    d["traffic"] == 0
                    for d in here.values()
                    if d["state"] not in SERVING
                ),
                f"{environment}: traffic on a deployment that does not serve",
            )
            active = sorted(i for i, d in here.items() if d["state"] == "active")
            expect(
                sorted(open_lines[environment]) == active,
                f"{environment}: open ledger lines {open_lines[environment]}, "
                f"active deployments {active}",
            )
            open_runs = [i for i in here if {"queued", "running"} & set(runs[i])]
            expect(len(open_runs) <= 1, f"{environment}: open runs {open_runs}")
        for deployment_id, deployment in deployments.items():
            state, version = deployment["state"], versions[deployment["version_id"]]
            has_open_run = bool({"queued", "running"} & set(runs[deployment_id]))
            expect(
                has_open_run == (state in ("requested", "deploying")),
                f"d{deployment_id} is {state} with runs {runs[deployment_id]}",
            )
            expect(
                state not in ("requested", "deploying")
                or deployment["age"] < DEADLINE_SECONDS,
                f"d{deployment_id} still {state} after {deployment['age']:.0f} s",
            )
            pending = f"{deployment['environment']}_pending"
            if state in ("requested", "deploying", "rolling_out_canary"):
                expect(
                    version["state"] == pending,
                    f"d{deployment_id} {state}, its version {version['state']}",
                )
            if state == "active" and deployment["environment"] == "production":
                expect(
                    version["state"] == "production",
                    f"d{deployment_id} serves production, its version is "
                    f"{version['state']}",
                )
        for version_id, version in versions.items():
            mine = [d for d in deployments.values() if d["version_id"] == version_id]
            if version["state"] == "production":
                expect(
                    any(
                        d["environment"] == "production" and d["state"] == "active"
                        for d in mine
                    ),
                    f"{version['version']} is production with no active deployment",
                )
            if version["state"].endswith("_pending"):
                environment = version["state"].removesuffix("_pending")
                expect(
                    any(
                        d["environment"] == environment
                        and d["state"]
                        in ("requested", "deploying", "rolling_out_canary")
                        for d in mine
                    ),
                    f"{version['version']} is {version['state']}, nothing under way",
                )
        expect(
            sum(v["state"] == "production" for v in versions.values()) <= 1,
            "more than one version in production",
        )
        running = Counter()
        for experiment_id, experiment in self.experiments.items():
            if experiment["state"] != "running":
                continue
            running[experiment["environment"]] += 1
            # an arm whose colour left the route stops the experiment
            expect(
                all(d_state in ARM_STATES for _v, _d, d_state in experiment["arms"]),
                f"experiment {experiment_id} runs with arms {experiment['arms']}",
            )
        expect(
            all(n <= 1 for n in running.values()),
            f"running experiments per environment: {dict(running)}",
        )
        assert not problems, self._report(when, problems)
        return versions, deployments

    def _report(self, when, problems):
        return (
            f"seed {self.seed}, {when}: "
            + "; ".join(problems)
            + "\nprogram so far:\n"
            + "\n".join(self.log[-30:])
        )

    # -- actions ---------------------------------------------------------------

    def _rest(self, method, path, payload=None):
        answer = getattr(self.approver.http, method)(
            f"{self.approver.base}{path}", json=payload, timeout=120
        )
        if answer.status_code != 204:
            assert answer.headers.get("Content-Type", "").startswith(
                "application/json"
            ), f"{method.upper()} {path}: {answer.status_code} {answer.text[:300]}"
        assert answer.status_code in REST_ANSWERS, (
            f"{method.upper()} {path}: {answer.status_code} {answer.text[:300]}"
        )
        return str(answer.status_code)

    def _rpc(self, model, method, ids, **kwargs):
        try:
            self.stack.admin.call(model, method, ids, **kwargs)
        except systemstack.RpcError as error:
            # a refusal the user is told about, never a crash
            assert error.name in REFUSALS, (
                f"{model}.{method}{ids}: {error.name} {error}"
            )
            return "refused"
        return "done"

    def kill(self, deployment_id):
        found = list(
            (self.stack.server.state_dir / "data" / "mlops_runtime").rglob(
                f"runtime/d{deployment_id}.json"
            )
        )
        if not found:
            return "no server"
        try:
            os.kill(json.loads(found[0].read_text())["pid"], signal.SIGKILL)
        except (ProcessLookupError, ValueError, KeyError):
            return "gone already"
        self.killed = True
        return "killed"

    def supervise(self):
        for _ in range(30):
            try:
                self.stack.admin.call(
                    "ir.cron", "method_direct_trigger", [self.cron_id]
                )
                return "done"
            except systemstack.RpcError as error:
                if "currently being executed" not in str(error):
                    raise
                time.sleep(0.5)
        return "busy"

    def choose_experiment(self, deployments):
        """An experiment action, from the second stream, or None."""
        rnd = self.experiment_random
        if rnd.random() >= 0.25:
            return None
        running = sorted(
            i for i, e in self.experiments.items() if e["state"] == "running"
        )
        if running and rnd.random() < 0.5:
            experiment = rnd.choice(running)
            return (
                "experiment_stop",
                experiment,
                lambda: self._rest("post", f"/experiments/{experiment}/stop"),
            )
        # two versions with a colour on the production route, mostly
        served = sorted(
            {
                d["version_id"]
                for d in deployments.values()
                if d["environment"] == "production" and d["state"] in ARM_STATES
            }
        )
        pool = served if len(served) >= 2 and rnd.random() < 0.8 else []
        pool = pool or sorted({d["version_id"] for d in deployments.values()})
        if len(pool) < 2:
            return None
        arms = rnd.sample(pool, 2)
        weight = rnd.choice([10, 50, 90])
        body = {
            "model_id": self.model_id,
            "environment": "production",
            "metric": "error_rate",
            "arms": [
                {"version_id": arms[0], "weight": weight},
                {"version_id": arms[1], "weight": 100 - weight},
            ],
        }
        return "experiment_start", tuple(arms), lambda: self._experiment(body)

    def _experiment(self, body):
        answer = self.approver.http.post(
            f"{self.approver.base}/experiments", json=body, timeout=120
        )
        assert answer.status_code in REST_ANSWERS | {201}, answer.text[:300]
        if answer.status_code != 201:
            return str(answer.status_code)
        return self._rest("post", f"/experiments/{answer.json()['id']}/start")

    def choose(self, versions, deployments):
        """One action, its arguments drawn from what exists now (any state:
        refusals are exercised as much as successes)."""
        rnd = self.random
        live_versions = [i for i, v in versions.items() if v["state"] != "archived"]

        def pick(pool, *states):
            """Mostly one that can take the action, sometimes any."""
            fitting = sorted(i for i, r in pool.items() if r["state"] in states)
            return rnd.choice(
                fitting if fitting and rnd.random() < 0.8 else sorted(pool)
            )

        deployment = pick(deployments, *SERVING) if deployments else None
        kinds = [
            (k, 0 if k == "archive" and len(live_versions) <= 3 else w)
            for k, w in self.KINDS
        ]
        kind = rnd.choices([k for k, _w in kinds], [w for _k, w in kinds])[0]
        if deployment is None and kind in self.ON_DEPLOYMENT:
            kind = "deploy"
        reason = {"reason": f"seed {self.seed}"}
        version = pick(
            versions,
            *{
                "deploy": ("validated",),
                "promote_blue_green": ("staging",),
                "promote_canary": ("staging",),
            }.get(kind, ("validated", "staging", "production", "deprecated")),
        )
        if kind == "rollback":
            deployment = pick(
                {
                    i: d
                    for i, d in deployments.items()
                    if d["environment"] == "production"
                }
                or deployments,
                "active",
            )
        if kind in ("canary_promote", "canary_abort"):
            deployment = pick(deployments, "rolling_out_canary")
        if kind == "deploy":
            return (
                kind,
                version,
                lambda: self._rest(
                    "post", f"/versions/{version}/deploy", {**reason, **self.DEPLOY}
                ),
            )
        if kind.startswith("promote"):
            body = {**reason, "strategy": kind.removeprefix("promote_")}
            if body["strategy"] == "canary" and rnd.random() < 0.5:
                body["canary_percent"] = rnd.choice([10, 30, 70])
            return (
                kind,
                version,
                lambda: self._rest("post", f"/versions/{version}/promote", body),
            )
        if kind == "rollback":
            return (
                kind,
                deployment,
                lambda: self._rest(
                    "post", f"/deployments/{deployment}/rollback", reason
                ),
            )
        if kind == "undeploy":
            return (
                kind,
                deployment,
                lambda: self._rest("delete", f"/deployments/{deployment}"),
            )
        if kind == "patch":
            body = rnd.choice(
                [{"canary_percent": rnd.choice([20, 60])}, {"replicas": 1}]
            )
            return (
                kind,
                deployment,
                lambda: self._rest("patch", f"/deployments/{deployment}", body),
            )
        if kind == "canary_promote":
            return (
                kind,
                deployment,
                lambda: self._rpc(
                    "mlops.deployment", "action_canary_promote", [deployment]
                ),
            )
        if kind == "canary_abort":
            return (
                kind,
                deployment,
                lambda: self._rpc(
                    "mlops.deployment",
                    "action_canary_abort",
                    [deployment],
                    reason="mbt",
                ),
            )
        if kind == "archive":
            return (
                kind,
                version,
                lambda: self._rpc(
                    "mlops.model.version", "action_archive_version", [version]
                ),
            )
        if kind != "pause":
            return self.extra_action(kind, deployment, deployments)
        seconds = rnd.choice([0.5, 1, 2, 4])
        return kind, seconds, lambda: time.sleep(seconds) or "slept"

    def extra_action(self, kind, deployment, deployments):
        """(kind, argument, call) of the actions beyond the lifecycle's."""
        if kind == "kill":
            return kind, deployment, lambda: self.kill(deployment)
        if kind == "supervise":
            return kind, None, self.supervise
        raise AssertionError(f"no action {kind}")

    # -- settling: the router serves what /endpoints announces ------------------

    def settle(self, when):
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            versions, deployments = self.check(when)
            busy = [
                i
                for i, d in deployments.items()
                if d["state"] in ("requested", "deploying", "rolling_out_canary")
            ]
            if not busy:
                break
            assert time.monotonic() < deadline, self._report(
                when, [f"still under way after {DEADLINE_SECONDS} s: {busy}"]
            )
            # a canary's gates need calls: the endpoint gets some
            self._call_endpoints()
            time.sleep(1)
        deadline = time.monotonic() + 90
        while True:
            self.supervise()
            wrong = self.serving_disagrees(deployments)
            if not wrong:
                return
            assert time.monotonic() < deadline, self._report(when, wrong)
            time.sleep(2)
            versions, deployments = self.check(when)

    def _entries(self):
        items = self.stack.rest.get("/endpoints").json()["items"]
        return {e["environment"]: e for e in items if e["model"] == self.name}

    def _call_endpoints(self):
        for entry in self._entries().values():
            for _ in range(3):
                try:
                    requests.post(
                        entry["invoke_url"], json=BODY, headers=self.invoke, timeout=10
                    )
                except requests.RequestException:
                    pass

    def serving_disagrees(self, deployments):
        entries = self._entries()
        wrong = []
        versions, _deployments, _runs, _ledger = self.snapshot()
        for environment in ("staging", "production"):
            serving = [
                d
                for d in deployments.values()
                if d["environment"] == environment and d["state"] in SERVING
            ]
            entry = entries.get(environment)
            if not serving:
                if entry:
                    wrong.append(f"{environment}: announced with nothing serving")
                continue
            if not entry:
                wrong.append(f"{environment}: serves but is not announced")
                continue
            announced = {t["version"] for t in entry["traffic"]}
            expected = {versions[d["version_id"]]["version"] for d in serving}
            if announced != expected:
                wrong.append(
                    f"{environment}: announced {announced}, serving {expected}"
                )
            # a running experiment's arms share the route
            answering = announced | {
                versions[v]["version"]
                for e in self.experiments.values()
                if e["state"] == "running" and e["environment"] == environment
                for v, _d, _s in e["arms"]
            }
            try:
                answer = requests.post(
                    entry["invoke_url"], json=BODY, headers=self.invoke, timeout=10
                )
            except requests.RequestException as error:
                wrong.append(f"{environment}: {entry['invoke_url']} {error}")
                continue
            if answer.status_code != 200:
                wrong.append(f"{environment}: {answer.status_code} {answer.text[:200]}")
            elif answer.headers.get("X-MLOps-Version") not in answering:
                wrong.append(
                    f"{environment}: answered by "
                    f"{answer.headers.get('X-MLOps-Version')}, announced {announced}"
                )
        return wrong

    # -- the run --------------------------------------------------------------

    def run(self, steps):
        self.upload(4)
        versions, deployments = self.check("before the first step")
        for step in range(1, steps + 1):
            width = self.random.choice([1, 1, 2, 2, 3])
            batch = [self.choose(versions, deployments) for _ in range(width)]
            experiment = self.choose_experiment(deployments)
            if experiment:
                batch.append(experiment)
            with ThreadPoolExecutor(len(batch)) as pool:
                outcomes = list(pool.map(lambda action: action[2](), batch))
            for (kind, argument, _call), outcome in zip(batch, outcomes, strict=True):
                self.seen[(kind, outcome)] += 1
                self.log.append(f"{step}: {kind}({argument}) -> {outcome}")
            versions, deployments = self.check(f"after step {step}")
            if step % SETTLE_EVERY == 0 or step == steps:
                self.settle(f"settling after step {step}")
                versions, deployments = self.check(f"settled after step {step}")
            live = [v for v in versions.values() if v["state"] != "archived"]
            fresh = [v for v in versions.values() if v["state"] == "validated"]
            if len(live) < 3 or (step % SETTLE_EVERY == 0 and not fresh):
                # new versions to deploy: each reaches staging only once
                self.upload(2)
                versions, deployments = self.check(f"uploads after step {step}")
        failed = self.stack.jobs([("state", "=", "failed")])
        assert not failed, self._report("at the end", [f"failed jobs: {failed}"])
        return self.seen


def run_program(program, steps):
    """Run ``program`` for ``steps``; {(action, answer): times}."""
    started = time.monotonic()
    try:
        seen = program.run(steps)
    finally:
        program.db.close()
    # the figures the note quotes: steps, actions and what they answered
    print(
        f"\n{program.name}: {steps} steps, {sum(seen.values())} actions in "
        f"{time.monotonic() - started:.0f} s: "
        + ", ".join(f"{k}->{o} x{n}" for (k, o), n in sorted(seen.items()))
    )
    # the program exercised the lifecycle, not only its refusals
    done = {kind for (kind, outcome), _n in seen.items() if outcome in ("202", "204")}
    assert done, f"{program.name}: no action was accepted: {seen}"
    return seen


def _run(world, seed):
    run_program(Program(world, seed), STEPS)


@pytest.mark.parametrize("seed", REGRESSION_SEEDS)
def test_kept_seeds(world, seed):
    _run(world, seed)


def test_a_new_seed(world):
    _run(world, _fresh_seed())


def test_two_deploys_at_once_one_wins_the_other_is_told(world):
    """The race the open-run index used to answer with an HTML 400."""
    stack, approver, _invoke = world
    program = Program(world, 7)
    program.name = f"mbt-race-{os.getpid()}"
    try:
        program.upload(2)
        versions, _deployments = program.check("uploaded")
        barrier = threading.Barrier(2)

        def deploy(version_id):
            barrier.wait()
            return approver.post(f"/versions/{version_id}/deploy", {"reason": "race"})

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(deploy, sorted(versions)))
        assert sorted(a.status_code for a in answers) == [202, 409], [
            a.text for a in answers
        ]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.json()["error"]["code"] == "conflict", refused.text
        assert "already under way" in refused.json()["error"]["message"]
        program.settle("after the race")
    finally:
        program.db.close()
