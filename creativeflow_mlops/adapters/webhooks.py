"""Outbound webhooks: a POST per event, signed per Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
HMAC-SHA256 of "<id>.<timestamp>.<body>">`` with a ``whsec_`` secret).

Where they may go: ``check_url`` refuses what is not http(s), and a host
that is or resolves to a loopback, link-local, private, shared, multicast or
unspecified address (server-side request forgery), unless ``allow_private``.
``deliver`` checks again at each delivery (DNS may have changed) and
connects to the very address it checked: the name is resolved once, so a
resolver answering a public address to the check and a private one to the
connection (DNS rebinding) gains nothing; TLS still verifies the name. It
never follows a redirect (a 3xx is a failed attempt: it could point
anywhere) and always has a timeout. An attempt's outcome is an ``Attempt``; it raises
nothing for an answer, only ``UnsafeUrl`` for an address refused.

Plain Python: no Odoo.
"""

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH

TIMEOUT = (5, 10)  # connect, read (seconds)
EXCERPT = 500


class UnsafeUrl(ValueError):
    """A URL a webhook may not be sent to."""


@dataclass
class Attempt:
    status: int  # 0: no answer
    ok: bool
    excerpt: str
    duration_ms: int
    error: str = ""


def _refused(address):
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (address.version == 4 and address in ipaddress.ip_network("100.64.0.0/10"))
        or (
            address.version == 6
            and address.ipv4_mapped is not None
            and _refused(address.ipv4_mapped)
        )
    )


def check_url(url, allow_private=False, resolve=True):
    """``url`` if a webhook may go there, else ``UnsafeUrl`` saying why."""
    _addresses(url, allow_private, resolve)
    return url


def _addresses(url, allow_private=False, resolve=True):
    """The addresses ``url`` may be reached at, checked: a list (empty
    when ``resolve`` is false and the host is a name)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("a webhook URL is http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("a webhook URL carries no credentials: sign, do not log in")
    # a name's root dot changes nothing it reaches ("localhost.")
    host = parts.hostname.rstrip(".")
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        local = host == "localhost" or host.endswith((".localhost", ".local"))
        if local and not allow_private:
            raise UnsafeUrl(f"{host} is this machine or its network") from None
        if not resolve:
            return []
        try:
            infos = socket.getaddrinfo(host, _port(parts), proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise UnsafeUrl(f"{host} does not resolve ({error.strerror})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if _refused(address):
                raise UnsafeUrl(
                    f"{host} is {address}, a loopback, link-local or private "
                    "address: allow private targets in the settings to send there"
                )
    return addresses


def _literal_address(host):
    """The address ``host`` spells, in any form a resolver takes for one:
    IPv6, dotted IPv4, and the forms ``inet_aton`` reads (one number
    ``2130706433``, hexadecimal ``0x7f000001``, short ``127.1``, octal
    ``0177.0.0.1``); None for a name."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    if not _IPV4_LEGACY.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


_IPV4_LEGACY = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.I)


def _port(parts):
    return parts.port or (443 if parts.scheme == "https" else 80)


class BadSecret(ValueError):
    """A secret that is not a Standard Webhooks one."""


def sign_webhook(secret, message_id, timestamp, body):
    """The Standard Webhooks signature header of ``body`` (bytes)."""
    key = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(key, validate=True)
    except ValueError:
        raise BadSecret(
            "the webhook secret is not a Standard Webhooks secret "
            "(whsec_ followed by base64)"
        ) from None
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def new_secret():
    import secrets  # noqa: PLC0415

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def deliver(url, secret, message_id, event_type, data, allow_private=False):
    """POST ``{"type", "timestamp", "data"}`` to ``url``, signed; the
    ``Attempt``. ``message_id`` is the same on every retry of one event."""
    addresses = _addresses(url, allow_private)
    body = json.dumps(
        {
            "type": event_type,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": data,
        },
        separators=(",", ":"),
        default=str,
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "creativeflow-mlops-webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign_webhook(secret, message_id, timestamp, body),
    }
    started = time.perf_counter()
    try:
        status, excerpt = _post_any(url, addresses, body, headers)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return Attempt(
            0,
            False,
            "",
            int((time.perf_counter() - started) * 1000),
            f"no answer ({type(error).__name__})",
        )
    duration = int((time.perf_counter() - started) * 1000)
    text = excerpt.decode("utf-8", errors="replace")
    if 300 <= status < 400:
        return Attempt(status, False, text, duration, "redirects are not followed")
    return Attempt(status, 200 <= status < 300, text, duration)


def _post_any(url, addresses, body, headers):
    """``_post`` to the first of ``addresses`` that takes the connection,
    as a resolving client would: every one of them was checked."""
    for address in addresses[:-1]:
        try:
            return _post(url, address, body, headers)
        except (
            urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.ConnectTimeoutError,
        ):
            continue
    return _post(url, addresses[-1], body, headers)


def _post(url, address, body, headers):
    """POST to ``url`` over a connection to ``address`` (what the check
    resolved), naming the host in ``Host`` and, over TLS, in SNI and the
    certificate check; ``(status, the answer's first EXCERPT bytes)``."""
    parts = urlsplit(url)
    timeout = urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1])
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            str(address),
            _port(parts),
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("REQUESTS_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            str(address), _port(parts), timeout=timeout, retries=False
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with pool:
        answer = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": parts.netloc},
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            # read a little of the answer, never the whole of a huge one
            return answer.status, answer.read(EXCERPT, decode_content=True) or b""
        finally:
            answer.release_conn()


def message_id(database_uuid, event_id):
    """The ``webhook-id`` of an event: the same on every retry, unique
    across databases."""
    return f"msg_{uuid.UUID(database_uuid).hex[:12]}_{event_id}"
