# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Presigned part URLs for the local store's direct uploads: what S3's
signatures are for its parts, an HMAC of the database secret over the
upload, the part and the expiry. ``PUT`` on such a URL (controllers
``registry_api``) stores the part with no other credential, exactly as a
presigned S3 URL does, and only until it expires."""

import hashlib
import hmac
import time
from urllib.parse import urlencode

from odoo.http import request

from . import errors

PART_PATH = f"{errors.REST_PREFIX}/uploads/parts"


def signature(secret, upload_id, part_number, expires):
    message = f"{upload_id}.{part_number}.{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def part_url(secret, base_url, upload_id, part_number, expires):
    """The URL part ``part_number`` of ``upload_id`` is PUT to, valid for
    ``expires`` (a timedelta); on the host the client called when there is
    a request, else on ``base_url``."""
    until = int(time.time() + expires.total_seconds())
    host = request.httprequest.host_url.rstrip("/") if request else base_url
    query = urlencode(
        {
            "expires": until,
            "signature": signature(secret, upload_id, part_number, until),
        }
    )
    return f"{host}{PART_PATH}/{upload_id}/{part_number}?{query}"


def check(secret, upload_id, part_number, expires, given):
    """Whether ``given`` signs this part and has not expired."""
    try:
        until = int(expires)
    except (TypeError, ValueError):
        return False
    if until < time.time() or not isinstance(given, str):
        return False
    expected = signature(secret, upload_id, part_number, until)
    # bytes: compare_digest refuses a str that is not ASCII
    return hmac.compare_digest(expected.encode(), given.encode())
