"""Events and webhooks as they run for real: versions uploaded by several
clients at once on a real Odoo with the job runner at two channels; every
event in GET /events and delivered to a webhook receiver (a local server
that records what arrives) exactly once, signed (verified with the
``standardwebhooks`` package); the receiver killed and restarted on its
port: the delivery comes with the retry, same ``webhook-id``."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import samples
import standardwebhooks
import systemstack
import testservers


@pytest.fixture(scope="module")
def receiver():
    server = testservers.RecordingServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hook(stack, receiver):
    admin = stack.admin
    admin.call(
        "ir.config_parameter",
        "set_param",
        "creativeflow_mlops.webhook_allow_private",
        "True",
    )
    hook_id = admin.call(
        "mlops.webhook",
        "create",
        {
            "name": "receiver",
            "url": receiver.url + "/mlops",
            "event_types": "version.*",
        },
    )
    shown = admin.button("mlops.webhook", "action_show_secret", [hook_id])
    return hook_id, shown["params"]["message"]


def _deliveries(receiver, secret):
    """{event id: [payload...]} of what arrived, each verified."""
    got = {}
    for sent in list(receiver.requests):
        payload = standardwebhooks.Webhook(secret).verify(sent["body"], sent["headers"])
        assert sent["headers"]["webhook-id"].endswith(f"_{payload['data']['id']}")
        got.setdefault(payload["data"]["id"], []).append(payload)
    return got


def _events(stack, since, version_ids):
    items, cursor = [], since
    while True:
        page = stack.rest.get("/events", since=cursor, limit=7).json()
        items += page["items"]
        if not page["items"]:
            return [e for e in items if e["version_id"] in version_ids], cursor
        cursor = page["next"]


def test_concurrent_changes_reach_events_and_the_webhook_once(
    stack, receiver, hook, name
):
    hook_id, secret = hook
    start = stack.rest.get("/events", since=0, limit=500).json()
    cursor = start["next"]
    while start["items"]:
        start = stack.rest.get("/events", since=cursor, limit=500).json()
        cursor = start["next"]

    def upload(index):
        answer = stack.rest.upload(
            f"{name}-{index}", "1.0.0", samples.onnx_mlp(seed=40 + index)
        )
        assert answer.status_code == 202, answer.text
        return answer.json()["version_id"]

    with ThreadPoolExecutor(4) as pool:
        version_ids = list(pool.map(upload, range(4)))
    settled = stack.rest.wait_settled(version_ids)
    assert set(settled.values()) == {"validated"}, settled

    logged, _next = _events(stack, cursor, set(version_ids))
    ids = [e["id"] for e in logged]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for version_id in version_ids:
        states = [e["state"] for e in logged if e["version_id"] == version_id]
        assert states[-2:] == ["validating", "validated"], states
    # every event once at the receiver, as logged
    got = systemstack.wait_for(
        lambda: (d := _deliveries(receiver, secret)) and set(ids) <= set(d) and d
    )
    for event in logged:
        (payload,) = got[event["id"]]
        assert payload["type"] == event["type"]
        assert payload["data"] == event

    # the receiver goes away; a change meanwhile is tried again and arrives
    # once it is back, with the same webhook-id
    port = int(receiver.url.rsplit(":", 1)[1])
    receiver.stop()
    try:
        stack.admin.button(
            "mlops.model.version", "action_archive_version", [version_ids[0]]
        )
        assert stack.rest.get(f"/versions/{version_ids[0]}").json()["state"] == (
            "archived"
        )
        failed = systemstack.wait_for(
            lambda: stack.admin.call(
                "mlops.webhook.attempt",
                "search_read",
                [
                    ("webhook_id", "=", hook_id),
                    ("ok", "=", False),
                    # a burst may have had a refused attempt before, retried
                    ("event_type", "=", "version.archived"),
                ],
                fields=["event_type", "error", "message_id"],
            )
        )
        assert failed[0]["event_type"] == "version.archived"
        assert "no answer" in failed[0]["error"]
    finally:
        back = testservers.RecordingServer(port=port).start()
    try:
        # (another delivery waiting for its retry may come first)
        (arrived,) = systemstack.wait_for(
            lambda: [
                r
                for r in back.requests
                if r["headers"]["webhook-id"] == failed[0]["message_id"]
            ],
            timeout=120,
        )
        payload = standardwebhooks.Webhook(secret).verify(
            arrived["body"], arrived["headers"]
        )
        assert payload["type"] == "version.archived"
        assert payload["data"]["version_id"] == version_ids[0]
    finally:
        back.stop()
