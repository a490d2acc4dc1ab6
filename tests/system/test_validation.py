"""Validation rounds on a real Odoo server whose queue_job runner runs two
jobs at a time, with a real S3 server: uploads over REST, states read back
over REST, jobs and chatter read over JSON-RPC as the admin."""

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import samples

pytestmark = pytest.mark.system

SETTLED = {"validated", "validation_failed"}


def _upload_all(rest, uploads, workers=10):
    """POST every (model, version, bytes, filename, metadata) at once;
    the answers in the same order."""

    def send(item):
        model, version, data, filename, metadata = item
        return rest.upload(model, version, data, filename=filename, **metadata)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(send, uploads))


def _accepted(answers):
    answers = list(answers)
    for answer in answers:
        assert answer.status_code == 202, answer.text
    return [answer.json()["version_id"] for answer in answers]


def _messages(stack, version_id):
    return [
        message["body"]
        for message in stack.admin.call(
            "mail.message",
            "search_read",
            [("model", "=", "mlops.model.version"), ("res_id", "=", version_id)],
            fields=["body"],
        )
    ]


def _assert_jobs_done(stack, version_ids, jobs_expected=None):
    """Every job of these versions' rounds ran to its end: none left
    waiting, queued, started or failed. Each scan has its job unless
    ``jobs_expected`` says how many (a direct upload's integrity check is
    settled by its verification job, without one of its own)."""
    results = stack.admin.call(
        "mlops.validation.result",
        "search_read",
        [("version_id", "in", version_ids)],
        fields=["id", "state"],
    )
    assert results and all(r["state"] not in ("pending", "running") for r in results)
    keys = [f"mlops-scan-{r['id']}" for r in results]
    jobs = stack.jobs([("identity_key", "in", keys)])
    assert len(jobs) >= (len(keys) if jobs_expected is None else jobs_expected)
    # the newest job of each scan ran to its end; an older one may have been
    # cancelled by the watchdog when it queued the scan again (its parent
    # died with the killed server before the runner re-queued it)
    newest = {}
    for job in sorted(jobs, key=lambda j: j["id"]):
        newest[job["identity_key"]] = job
    assert {job["state"] for job in newest.values()} == {"done"}, jobs
    assert {job["state"] for job in jobs} <= {"done", "cancelled"}, jobs


def test_twenty_distinct_uploads_at_once_all_validate(stack, name):
    """20 versions of different sizes and shapes, uploaded concurrently:
    every one reaches validated, each round settled exactly once."""
    uploads = [
        (
            f"{name}-{n}",
            "1.0.0",
            samples.onnx_matmul(4 + n, 1 + n % 5, seed=n),
            "m.onnx",
            {},
        )
        for n in range(20)
    ]
    version_ids = _accepted(_upload_all(stack.rest, uploads))
    states = stack.rest.wait_settled(version_ids, timeout=420)
    assert set(states.values()) == {"validated"}, states
    _assert_jobs_done(stack, version_ids)
    for version_id in version_ids:
        verdicts = [b for b in _messages(stack, version_id) if "Validation" in b]
        assert len(verdicts) == 1, verdicts


def test_last_scans_finishing_together_settle_the_round(stack, name):
    """The race of issue 7: the two last scans of a round finish at the same
    moment in two transactions (an ONNX whose external data points outside
    its folder fails format and runtime scans at once). Before the settle
    job, each read the other's result as still running and nobody settled:
    the versions stayed validating with every job done. The watchdog is off
    here: the round itself must settle."""
    bad = samples.onnx_matmul(4, 2, external="../../etc/weights.bin")
    uploads = [(f"{name}-{n}", "2.0.0", bad, "m.onnx", {}) for n in range(8)]
    version_ids = _accepted(_upload_all(stack.rest, uploads, workers=8))
    states = stack.rest.wait_settled(version_ids, timeout=180)
    assert set(states.values()) == {"validation_failed"}, states
    _assert_jobs_done(stack, version_ids)


def test_benign_and_malicious_uploaded_together(stack, name, tmp_path):
    """Malicious pickles and ONNX models among benign ones, concurrently:
    each malicious one fails, each benign one passes, no payload runs."""
    marker = tmp_path / "payload-ran"
    uploads = []
    for n in range(4):
        uploads += [
            (
                f"{name}-p{n}",
                "1.0-good",
                samples.benign_pickle(n),
                "w.pkl",
                {"model_format": "pickle"},
            ),
            (
                f"{name}-q{n}",
                "1.0-evil",
                samples.malicious_pickle(marker, 2 + n % 3),
                "w.pkl",
                {"model_format": "pickle"},
            ),
            (
                f"{name}-o{n}",
                "1.0-good",
                samples.onnx_matmul(3 + n, 2, seed=n),
                "m.onnx",
                {},
            ),
            (
                f"{name}-x{n}",
                "1.0-evil",
                samples.onnx_matmul(3, 2, external="/etc/passwd"),
                "m.onnx",
                {},
            ),
        ]
    answers = _upload_all(stack.rest, uploads)
    version_ids = _accepted(answers)
    states = stack.rest.wait_settled(version_ids, timeout=420)
    for (_model, version, *_rest), version_id in zip(uploads, version_ids, strict=True):
        expected = "validated" if version.endswith("good") else "validation_failed"
        assert states[version_id] == expected, (version, states[version_id])
    assert not marker.exists(), "a pickle payload ran"


def test_same_version_uploaded_ten_times_at_once(stack, name):
    """Ten clients push the same model and version with different bytes:
    one wins (202), nine get 409, the store holds the winner's object only."""
    payloads = [samples.onnx_matmul(6, 3, seed=100 + n) for n in range(10)]
    uploads = [(name, "4.0.0", data, "m.onnx", {}) for data in payloads]
    answers = _upload_all(stack.rest, uploads)
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202] + [409] * 9, [(a.status_code, a.text[:200]) for a in answers]
    winner = next(a for a in answers if a.status_code == 202).json()
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "conflict", answer.text
    key = winner["artifact"]["uri"].split(f"s3://{stack.bucket}/", 1)[1]
    assert key.endswith(f"/{name}/4.0.0/m.onnx"), key
    objects = [
        o.object_name
        for o in stack.objects(key.rsplit("/", 1)[0] + "/")
        if ".reports/" not in o.object_name
    ]
    assert objects == [key], objects
    stored = stack.minio.get_object(stack.bucket, objects[0]).read()
    assert hashlib.sha256(stored).hexdigest() == winner["artifact"]["sha256"]
    assert stored in payloads
    stack.rest.wait_settled([winner["version_id"]], timeout=120)


def test_odoo_killed_while_scans_run(stack, name):
    """SIGKILL on the server (workers, runner and scan children) in the
    middle of the rounds, then a restart: within the watchdog's period
    every version settles and no job is left behind."""
    uploads = [
        (f"{name}-{n}", "5.0.0", samples.onnx_matmul(8 + n, 4, seed=n), "m.onnx", {})
        for n in range(8)
    ]
    version_ids = _accepted(_upload_all(stack.rest, uploads))
    _wait_for(lambda: any(j["state"] == "started" for j in stack.jobs()), 60)
    stack.server.kill()
    stack.server.start()
    stack.login()
    # settled with the watchdog on, and the watchdog ran meanwhile
    states = stack.wait_with_watchdog(version_ids, timeout=300)
    assert set(states.values()) == {"validated"}, states
    _assert_jobs_done(stack, version_ids)


def test_s3_killed_during_a_round(stack, name):
    """The store goes away while the rounds run and comes back: the scans
    are retried by the job function's pattern and the rounds settle."""
    uploads = [
        (f"{name}-{n}", "6.0.0", samples.onnx_matmul(5, 2 + n, seed=n), "m.onnx", {})
        for n in range(4)
    ]
    version_ids = _accepted(_upload_all(stack.rest, uploads))
    stack.s3.stop()
    try:
        time.sleep(5)
        # the store's absence fails nothing: the scans wait for it
        assert not any(
            stack.rest.get(f"/versions/{v}").json()["state"] == "validation_failed"
            for v in version_ids
        )
    finally:
        stack.s3.start()
    states = stack.rest.wait_settled(version_ids, timeout=300)
    assert set(states.values()) == {"validated"}, states
    retried = stack.jobs(
        [("retry", ">", 0), ("model_name", "=", "mlops.validation.result")]
    )
    assert retried, "no scan met the store down"
    _assert_jobs_done(stack, version_ids)


def _wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_a_cancelled_round_is_taken_up_by_the_watchdog(stack, name):
    """An operator cancels the jobs of a round still waiting in the queue
    (Queue Jobs → Cancel): queue_job cancels what depends on them, nothing
    would ever settle the round. The watchdog queues the lost scans again,
    the round settles, and the chatter says so."""
    uploads = [
        (f"{name}-{n}", "8.0.0", samples.onnx_matmul(6, 2 + n, seed=n), "m.onnx", {})
        for n in range(10)
    ]
    version_ids = _accepted(_upload_all(stack.rest, uploads))
    # the last rounds wait behind the first ones (two channels)
    waiting = None
    for version_id in reversed(version_ids):
        (integrity,) = stack.admin.call(
            "mlops.validation.result",
            "search_read",
            [("version_id", "=", version_id), ("scan_type", "=", "integrity")],
            fields=["id"],
        )
        jobs = stack.jobs([("identity_key", "=", f"mlops-scan-{integrity['id']}")])
        if jobs and jobs[0]["state"] == "pending":
            stack.admin.call("queue.job", "button_cancelled", [jobs[0]["id"]])
            waiting = version_id
            break
    assert waiting, "every round started before one could be cancelled"
    stack.admin.call(
        "ir.config_parameter",
        "set_param",
        "creativeflow_mlops.watchdog_grace_minutes",
        0,
    )
    states = stack.wait_with_watchdog(version_ids, timeout=240)
    assert set(states.values()) == {"validated"}, states
    watchdog = [b for b in _messages(stack, waiting) if "Watchdog" in b]
    assert len(watchdog) == 1 and "queued again" in watchdog[0], watchdog


def _direct_upload(rest, model, data, announce=True, version="1.0.0"):
    """POST /uploads, the parts straight to S3, then complete: the 202."""
    import requests

    metadata = {"model_format": "onnx"}
    if announce:
        metadata["sha256"] = hashlib.sha256(data).hexdigest()
    started = rest.post(
        "/uploads",
        {
            "model": model,
            "version": version,
            "filename": "m.onnx",
            "size": len(data),
            "metadata": metadata,
        },
    )
    assert started.status_code == 201, started.text
    answer = started.json()
    parts = []
    for part in answer["parts"]:
        put = requests.put(part["url"], data=data, timeout=60)
        assert put.status_code == 200, put.text
        parts.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    done = rest.post(f"/uploads/{answer['upload_id']}/complete", {"parts": parts})
    assert done.status_code == 202, done.text
    return answer["upload_id"], done.json()["version_id"]


def test_direct_uploads_verified_concurrently(stack, name):
    """Direct multipart uploads completed at once: their verification jobs
    (read back, hash, register) run side by side with the rounds they start;
    every version validates, and one whose bytes differ from the SHA-256 it
    announced fails its integrity check in plain view."""
    payloads = [samples.onnx_matmul(5 + n, 3, seed=200 + n) for n in range(6)]

    def send(index):
        return _direct_upload(stack.rest, f"{name}-{index}", payloads[index])

    with ThreadPoolExecutor(6) as pool:
        uploads = list(pool.map(send, range(6)))
    # a client announcing one SHA-256 and sending other bytes
    forged = stack.rest.post(
        "/uploads",
        {
            "model": f"{name}-forged",
            "version": "1.0.0",
            "filename": "m.onnx",
            "size": len(payloads[0]),
            "metadata": {
                "model_format": "onnx",
                "sha256": hashlib.sha256(b"something else").hexdigest(),
            },
        },
    ).json()
    import requests

    put = requests.put(forged["parts"][0]["url"], data=payloads[0], timeout=60)
    completed = stack.rest.post(
        f"/uploads/{forged['upload_id']}/complete",
        {"parts": [{"part_number": 1, "etag": put.headers["ETag"]}]},
    )
    assert completed.status_code == 202, completed.text
    version_ids = [version for _upload, version in uploads]
    forged_id = completed.json()["version_id"]
    states = stack.rest.wait_settled(version_ids + [forged_id], timeout=300)
    assert [states[v] for v in version_ids] == ["validated"] * 6, states
    assert states[forged_id] == "validation_failed"
    for upload_id, _version in uploads:
        status = stack.rest.get(f"/uploads/{upload_id}").json()
        assert status["state"] == "completed", status
    forged_version = stack.rest.get(f"/versions/{forged_id}").json()
    integrity = [
        v for v in forged_version["validations"] if v["scan_type"] == "integrity"
    ]
    assert integrity[0]["state"] == "failed", integrity
    # four scans each (integrity was read with the upload); none for the
    # forged one, whose other scans were skipped by its integrity failure
    _assert_jobs_done(stack, version_ids + [forged_id], jobs_expected=6 * 4)


def test_parallel_versions_of_one_model_are_accepted(stack, name):
    """A CI system pushing several versions of an existing model at once:
    every upload is accepted (no 503 from a write on the model's row) and
    every round validates."""
    (first,) = _upload_all(
        stack.rest, [(name, "0.9.0", samples.onnx_matmul(4, 2), "m.onnx", {})]
    )
    assert first.status_code == 202, first.text
    uploads = [
        (name, f"1.{n}.0", samples.onnx_matmul(4 + n, 2, seed=n), "m.onnx", {})
        for n in range(10)
    ]
    version_ids = _accepted(_upload_all(stack.rest, uploads))
    states = stack.rest.wait_settled(version_ids + [first.json()["version_id"]])
    assert set(states.values()) == {"validated"}, states
    listed = stack.rest.get(f"/models/{first.json()['model_id']}/versions").json()
    assert listed["total"] == 11, listed


def test_parallel_versions_of_a_new_model_are_accepted(stack, name):
    """The first push of a model, ten versions at once: the uploads that
    lost the race to create the model are run again on the server and find
    it; every version is accepted, one model holds them all. The same with
    the file before the metadata (spooled, not streamed) and direct uploads."""
    uploads = [
        (name, f"1.{n}.0", samples.onnx_matmul(4 + n, 2, seed=n), "m.onnx", {})
        for n in range(10)
    ]
    answers = _upload_all(stack.rest, uploads)
    version_ids = _accepted(answers)
    assert len({a.json()["model_id"] for a in answers}) == 1

    def file_first(n):
        return stack.rest.http.post(
            f"{stack.rest.base}/models/upload",
            files=[
                (
                    "file",
                    (
                        "m.onnx",
                        samples.onnx_matmul(3, 2, seed=n),
                        "application/octet-stream",
                    ),
                ),
                (
                    "metadata",
                    (
                        None,
                        json.dumps(
                            {
                                "model": f"{name}-spooled",
                                "version": f"1.{n}.0",
                                "model_format": "onnx",
                            }
                        ),
                        "application/json",
                    ),
                ),
            ],
            timeout=120,
        )

    with ThreadPoolExecutor(6) as pool:
        version_ids += _accepted(pool.map(file_first, range(6)))

    def direct(n):
        return _direct_upload(
            stack.rest,
            f"{name}-direct",
            samples.onnx_matmul(3, 3, seed=n),
            version=f"1.{n}.0",
        )

    with ThreadPoolExecutor(6) as pool:
        directs = list(pool.map(direct, range(6)))
    version_ids += [version for _upload, version in directs]
    states = stack.rest.wait_settled(version_ids)
    assert set(states.values()) == {"validated"}, states
