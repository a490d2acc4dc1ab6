"""Outbound webhooks (adapters/webhooks.py) against a local server that
records what arrives: signatures verified by the ``standardwebhooks``
package, redirects not followed, slow and absent receivers, and the
addresses a webhook may not be sent to."""

import socket

import pytest
import standardwebhooks
import testservers

from odoo.addons.creativeflow_mlops.adapters import webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (a test's secret)
EVENT = {"id": 12, "type": "version.validated", "state": "validated"}


@pytest.fixture
def receiver():
    with testservers.RecordingServer() as server:
        yield server


def test_a_delivery_verifies_with_standard_webhooks(receiver):
    attempt = webhooks.deliver(
        receiver.url + "/hook",
        SECRET,
        "msg_abc_12",
        "version.validated",
        EVENT,
        allow_private=True,
    )
    assert attempt.ok and attempt.status == 200
    (sent,) = receiver.requests
    payload = standardwebhooks.Webhook(SECRET).verify(sent["body"], sent["headers"])
    assert payload["type"] == "version.validated"
    assert payload["data"] == EVENT
    assert sent["headers"]["webhook-id"] == "msg_abc_12"
    assert payload["timestamp"].endswith("Z")


def test_answers_redirects_and_absent_receivers(receiver, free_port, monkeypatch):
    receiver.answer(500, b"x" * 100_000)
    failed = webhooks.deliver(
        receiver.url, SECRET, "m1", "t", EVENT, allow_private=True
    )
    assert (failed.ok, failed.status) == (False, 500)
    assert len(failed.excerpt) == webhooks.EXCERPT
    # a redirect could point anywhere: never followed
    receiver.answer(302, b"", {"Location": "http://169.254.169.254/latest"})
    moved = webhooks.deliver(receiver.url, SECRET, "m2", "t", EVENT, allow_private=True)
    assert (moved.ok, moved.status) == (False, 302)
    assert "redirects are not followed" in moved.error
    assert [r["path"] for r in receiver.requests] == ["/", "/"]
    gone = webhooks.deliver(
        f"http://127.0.0.1:{free_port}/", SECRET, "m3", "t", EVENT, allow_private=True
    )
    assert (gone.ok, gone.status) == (False, 0)
    assert "ConnectionError" in gone.error
    monkeypatch.setattr(webhooks, "TIMEOUT", (1, 0.3))
    receiver.delay = 2
    slow = webhooks.deliver(receiver.url, SECRET, "m4", "t", EVENT, allow_private=True)
    assert (slow.ok, slow.status) == (False, 0)
    assert "Timeout" in slow.error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8069/",
        "http://printer.local/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "https://user:pw@example.com/",
        "https:///nohost",
    ],
)
def test_unsafe_targets_are_refused(url):
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(url)


def test_a_name_is_checked_by_what_it_resolves_to(monkeypatch):
    """A public-looking name that resolves to a private address (DNS
    rebinding) is refused at delivery; the resolver stands in for DNS,
    which this machine cannot reach."""

    def resolver(address):
        def getaddrinfo(host, port, *args, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        return getaddrinfo

    monkeypatch.setattr(socket, "getaddrinfo", resolver("10.0.0.7"))
    with pytest.raises(webhooks.UnsafeUrl, match="10.0.0.7"):
        webhooks.check_url("https://hooks.example.com/x")
    # on save, without resolving: the name is taken as it is
    assert webhooks.check_url("https://hooks.example.com/x", resolve=False)
    monkeypatch.setattr(socket, "getaddrinfo", resolver("93.184.215.14"))
    assert webhooks.check_url("https://hooks.example.com/x")
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.deliver("http://10.0.0.1/", SECRET, "m", "t", EVENT)


def test_message_ids_are_stable_per_event():
    dbuuid = "1c9e7a7e-7f44-11ef-9a3b-0242ac120002"
    assert webhooks.message_id(dbuuid, 7) == webhooks.message_id(dbuuid, 7)
    assert webhooks.message_id(dbuuid, 7) != webhooks.message_id(dbuuid, 8)
    assert webhooks.new_secret().startswith("whsec_")
