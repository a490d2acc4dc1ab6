# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Multipart uploads streamed into the artifact store while they arrive:
the only place that touches Werkzeug's form parser."""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import logging

import werkzeug.exceptions

from odoo.http import request

from ..exceptions import MLOpsError
from ..services import artifacts, settings
from .framework import (
    HEAD_SIZE,
    JsonHTTPError,
    _authenticate,
    _retrying,
    _translate,
)

_logger = logging.getLogger(__name__)


class _Prefixed:
    """A stream with bytes already read put back in front."""

    def __init__(self, head, stream):
        self._head = head
        self._stream = stream

    def read(self, size=-1):
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._stream.read(size)

    def readline(self, size=-1):
        if self._head:
            end = self._head.find(b"\n")
            if end >= 0:
                data, self._head = self._head[: end + 1], self._head[end + 1 :]
                return data
            return self.read(len(self._head)) + self._stream.readline(size)
        return self._stream.readline(size)


def _leading_metadata(head, boundary):
    """The value of the ``metadata`` part when it is the body's first part
    and fits in ``head``; else None."""
    opening = b"--" + boundary + b"\r\n"
    if not head.startswith(opening):
        return None
    headers_end = head.find(b"\r\n\r\n", len(opening))
    if headers_end < 0:
        return None
    headers = head[len(opening) : headers_end].lower()
    if b'name="metadata"' not in headers or b"filename=" in headers:
        return None
    value_end = head.find(b"\r\n--" + boundary, headers_end + 4)
    if value_end < 0:
        return None
    return head[headers_end + 4 : value_end].decode("utf-8", "replace")


class _GuardedWriter:
    """The store writer as werkzeug's form parser sees it (its errors are
    answered by _max_upload, which runs the parse)."""

    def __init__(self, writer):
        self.writer = writer

    def write(self, data):
        return self.writer.write(data)

    def seek(self, *args):
        return 0

    def tell(self):
        return self.writer.size

    def flush(self):
        return None


def body_stream():
    """The request's body as werkzeug reads it (bounded by its
    Content-Length), for a route that stores a raw body as it arrives."""
    return request.httprequest._HTTPRequest__wrapped.stream


def _stream_into_store():
    """When the ``metadata`` part comes first, send the ``file`` part to the
    store while it arrives instead of spooling it to disk first."""
    raw = request.httprequest._HTTPRequest__wrapped  # the werkzeug request
    boundary = raw.mimetype_params.get("boundary")
    if raw.mimetype != "multipart/form-data" or not boundary:
        return
    stream = raw.stream
    head = b""
    while len(head) < HEAD_SIZE:  # a socket read may return less
        chunk = stream.read(HEAD_SIZE - len(head))
        if not chunk:
            break
        head += chunk
    raw.__dict__["stream"] = _Prefixed(head, stream)  # werkzeug's cached_property
    text = _leading_metadata(head, boundary.encode("latin-1"))
    if text is None:
        return
    env = request.env
    try:
        metadata = artifacts.parse_metadata(env, text)
    except MLOpsError:
        return  # the route reports it once the body is parsed
    try:
        # nothing of the body but its head has been read: a lost race (a new
        # model created by another upload meanwhile) is run again
        backend, model = _retrying(
            lambda: artifacts.plan_streamed_upload(request.env, metadata)
        )
    except Exception as error:  # noqa: BLE001 - answered in JSON before the body
        status, code, message, details = _translate(error)
        raise JsonHTTPError(status, code, message, details) from error
    default_factory = raw._get_file_stream

    def factory(total_content_length, content_type, filename=None, content_length=None):
        if getattr(request, "mlops_stream", None) is not None:
            return default_factory(
                total_content_length, content_type, filename, content_length
            )
        try:
            key = model._artifact_key(backend, metadata["version"], filename or "")
            artifacts.reserve_key(request.env, backend, key)
            writer = backend._get_store().open_writer(key, content_type)
        except ValueError:  # a filename that makes no key: spooled, refused later
            return default_factory(
                total_content_length, content_type, filename, content_length
            )
        # any other error is answered by _max_upload, which runs this parse
        request.mlops_stream = (_GuardedWriter(writer), backend)
        return request.mlops_stream[0]

    raw._get_file_stream = factory


def _drain(raw, chunk=1024 * 1024):
    """Read what is left of a request body and drop it."""
    try:
        while raw.stream.read(chunk):
            pass
    except Exception:  # noqa: BLE001 - the client may be gone too
        _logger.debug("draining an upload that failed", exc_info=True)


def _max_upload(controller):
    """Called before the body is read: authenticate, refuse an oversized
    upload while nothing has been received yet, and stream the artifact to
    the store as it arrives when the metadata comes first."""
    _authenticate()
    gigabytes = settings.get(request.env, "max_upload_gb")
    limit = gigabytes * 1024**3
    length = request.httprequest.content_length
    if length is not None and length > limit:
        raise JsonHTTPError(
            413,
            "payload_too_large",
            f"Uploads through Odoo are limited to {gigabytes} GiB; "
            "use POST /uploads for a direct upload.",
        )
    _stream_into_store()
    # parse the body here rather than in Odoo's dispatcher: a client going
    # away or a body over the limit then removes what was already stored
    # and is answered in JSON
    raw = request.httprequest._HTTPRequest__wrapped
    raw.max_content_length = limit
    try:
        raw.form  # noqa: B018 - werkzeug parses form and files on first access
    except Exception as error:
        streamed = getattr(request, "mlops_stream", None)
        if streamed:
            streamed[0].writer.abort()
        if isinstance(error, werkzeug.exceptions.ClientDisconnected):
            raise JsonHTTPError(
                400,
                "invalid_request",
                "The request body ended before its announced length; nothing was kept.",
            ) from error
        status, code, message, details = _translate(error)
        if status == 503:
            # the store went away while the client still sends: take the rest
            # of the body (discarded) so that the client reads the answer
            _drain(raw)
        if isinstance(error, JsonHTTPError):
            raise
        raise JsonHTTPError(status, code, message, details) from error
    return limit
