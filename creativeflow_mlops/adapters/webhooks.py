"""Outbound webhooks: a POST per event, signed per Standard Webhooks
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
HMAC-SHA256 of "<id>.<timestamp>.<body>">`` with a ``whsec_`` secret).

Where they may go: ``check_url`` refuses what is not http(s), and a host
that is or resolves to a loopback, link-local, private, shared, multicast or
unspecified address (server-side request forgery), unless ``allow_private``.
``deliver`` checks again at each delivery (DNS may have changed), never
follows a redirect (a 3xx is a failed attempt: it could point anywhere), and
always has a timeout. An attempt's outcome is an ``Attempt``; it raises
nothing for an answer, only ``UnsafeUrl`` for an address refused.

Plain Python: no Odoo.
"""

import ipaddress
import json
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from .ci import sign_webhook

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
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("a webhook URL is http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("a webhook URL carries no credentials: sign, do not log in")
    if allow_private:
        return url
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host == "localhost" or host.endswith((".localhost", ".local")):
            raise UnsafeUrl(f"{host} is this machine or its network") from None
        if not resolve:
            return url
        try:
            infos = socket.getaddrinfo(
                host, parts.port or 443, proto=socket.IPPROTO_TCP
            )
        except OSError as error:
            raise UnsafeUrl(f"{host} does not resolve ({error.strerror})") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if _refused(address):
            raise UnsafeUrl(
                f"{host} is {address}, a loopback, link-local or private address: "
                "allow private targets in the settings to send there"
            )
    return url


def new_secret():
    import base64  # noqa: PLC0415
    import secrets  # noqa: PLC0415

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def deliver(url, secret, message_id, event_type, data, allow_private=False):
    """POST ``{"type", "timestamp", "data"}`` to ``url``, signed; the
    ``Attempt``. ``message_id`` is the same on every retry of one event."""
    check_url(url, allow_private)
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
        with requests.post(
            url,
            data=body,
            headers=headers,
            timeout=TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as answer:
            # read a little of the answer, never the whole of a huge one
            excerpt = answer.raw.read(EXCERPT, decode_content=True) or b""
            status = answer.status_code
    except requests.RequestException as error:
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


def message_id(database_uuid, event_id):
    """The ``webhook-id`` of an event: the same on every retry, unique
    across databases."""
    return f"msg_{uuid.UUID(database_uuid).hex[:12]}_{event_id}"
