"""Outbound webhooks (adapters/webhooks.py) against a local server that
records what arrives: signatures verified by the ``standardwebhooks``
package, redirects not followed, slow and absent receivers, and the
addresses a webhook may not be sent to."""

import ipaddress
import socket
import ssl
import subprocess

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


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://localhost./",
        "http://a.localhost./",
        "http://167772161/",  # 10.0.0.1
    ],
)
def test_every_spelling_of_a_private_address_is_refused_on_save(url):
    """What a resolver reads as a loopback or private address is refused
    on save, without resolving, as the dotted form is."""
    with pytest.raises(webhooks.UnsafeUrl):
        webhooks.check_url(url, resolve=False)


def test_names_that_only_look_numeric_stay_names():
    assert webhooks._literal_address("1e100.net") is None
    assert webhooks._literal_address("0x7g.example") is None
    assert webhooks._literal_address("93.184.215.14") == ipaddress.ip_address(
        "93.184.215.14"
    )


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


def _resolving(answers, asked):
    """A stand-in for DNS: ``hooks.example.com`` resolves to the next of
    ``answers`` (the last one sticks), counted in ``asked``; an address
    resolves to itself."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return getaddrinfo


def test_a_delivery_connects_to_the_address_it_checked(receiver, monkeypatch):
    """The name is resolved once per delivery and the connection goes to
    that address, naming the host: a second answer from DNS is never
    asked for."""
    asked = []
    monkeypatch.setattr(socket, "getaddrinfo", _resolving(["127.0.0.1"], asked))
    port = receiver.server.server_address[1]
    url = f"http://hooks.example.com:{port}/hook?x=1"
    attempt = webhooks.deliver(url, SECRET, "m", "t", EVENT, allow_private=True)
    assert attempt.ok, attempt
    assert asked == ["hooks.example.com"]
    (sent,) = receiver.requests
    assert (
        sent["headers"]["host"]
        == f"hooks.example.com:{receiver.server.server_address[1]}"
    )
    assert sent["path"] == "/hook?x=1"
    assert standardwebhooks.Webhook(SECRET).verify(sent["body"], sent["headers"])


def test_dns_rebinding_gains_nothing(receiver, monkeypatch):
    """DNS answers a public address to the check and this machine's to
    whatever asks next: the delivery goes to the public address (which
    this machine cannot reach), never to the local receiver."""
    asked = []
    monkeypatch.setattr(
        socket, "getaddrinfo", _resolving(["93.184.215.14", "127.0.0.1"], asked)
    )
    monkeypatch.setattr(webhooks, "TIMEOUT", (0.5, 0.5))
    url = f"http://hooks.example.com:{receiver.server.server_address[1]}/hook"
    attempt = webhooks.deliver(url, SECRET, "m", "t", EVENT)
    assert (attempt.ok, attempt.status) == (False, 0)
    assert attempt.error.startswith("no answer")
    assert receiver.requests == []
    # the next delivery checks again, and refuses what DNS says now
    with pytest.raises(webhooks.UnsafeUrl, match="127.0.0.1"):
        webhooks.deliver(url, SECRET, "m", "t", EVENT)


def _certificates(folder):
    """A CA, and a certificate it signed for hooks.example.com."""

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "cert.pem", folder / "cert.key", folder / "cert.csr"
    names = folder / "names.ext"
    names.write_text("subjectAltName=DNS:hooks.example.com\n")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=creativeflow test CA", "-keyout", ca_key, "-out", ca,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hooks.example.com",
        "-keyout", key, "-out", request,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", names,
    )  # fmt: skip
    return ca, cert, key


def test_tls_still_checks_the_name(tmp_path, monkeypatch):
    """Connecting to an address does not loosen TLS: the name of the URL
    goes in SNI and is what the certificate must carry."""
    ca, cert, key = _certificates(tmp_path)
    server = testservers.RecordingServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    monkeypatch.setattr(socket, "getaddrinfo", _resolving(["127.0.0.1"], []))
    with server:
        port = server.server.server_address[1]
        signed = webhooks.deliver(
            f"https://hooks.example.com:{port}/hook", SECRET, "m", "t", EVENT,
            allow_private=True,
        )  # fmt: skip
        assert signed.ok, signed
        # the same server by its address: not the name on its certificate
        unnamed = webhooks.deliver(
            f"https://127.0.0.1:{port}/hook", SECRET, "m", "t", EVENT,
            allow_private=True,
        )  # fmt: skip
        assert (unnamed.ok, unnamed.error) == (False, "no answer (SSLError)")
        assert [r["headers"]["host"] for r in server.requests] == [
            f"hooks.example.com:{port}"
        ]


def test_message_ids_are_stable_per_event():
    dbuuid = "1c9e7a7e-7f44-11ef-9a3b-0242ac120002"
    assert webhooks.message_id(dbuuid, 7) == webhooks.message_id(dbuuid, 7)
    assert webhooks.message_id(dbuuid, 7) != webhooks.message_id(dbuuid, 8)
    assert webhooks.new_secret().startswith("whsec_")
