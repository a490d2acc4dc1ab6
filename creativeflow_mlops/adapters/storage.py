"""Artifact stores: what they share (errors, object names, the writer
protocol). The stores: ``storage_s3`` (MinIO or any S3, through the ``minio``
SDK) and ``storage_local`` (a folder, the embedded default).

Both stream: an artifact goes through in parts, its size and SHA-256 computed
on the way, and never sits whole in memory. A failure leaves no partial
object behind. Errors are sorted for the caller:

- ``StorageUnavailable``: the backend cannot be reached now (retry later,
  HTTP 503);
- ``StorageRefused``: the backend answered no (credentials, policy, a
  missing bucket): retrying will not help.
"""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass

CHUNK_SIZE = 1024 * 1024
MAX_FILENAME_LENGTH = 200


class StorageError(Exception):
    """Base class of the store errors. ``code`` is the store's own error
    code when it gave one (``NoSuchUpload``, ``AccessDenied``...)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class StorageUnavailable(StorageError):
    """The backend cannot be reached: transient."""


class StorageRefused(StorageError):
    """The backend refused the operation: not transient."""


class IntegrityMismatch(StorageError):
    """What was stored is not what was announced."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    uri: str


# ---------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
# file names keep letters and digits of every script; what else a file system
# or an S3 key may misread (spaces, quotes, shell and URL characters) goes
_UNSAFE_IN_NAME = re.compile(r"[^\w.+-]+")


def sanitize_filename(name):
    """A safe base name: no folders, no traversal, no control characters.

    Raises ``ValueError`` when nothing usable is left.
    """
    if not isinstance(name, str):
        raise ValueError("the filename must be text")
    name = unicodedata.normalize("NFKC", name)
    # keep the last path component of either separator: "..\\..\\x" -> "x"
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_IN_NAME.sub("_", name).strip("._ ")
    if not name or set(name) <= {"."}:
        raise ValueError("the filename has no usable characters")
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        if dot and len(ext) < 20:
            name = stem[: MAX_FILENAME_LENGTH - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


def _segment(value, what):
    segment = _UNSAFE.sub("-", str(value)).strip("-.")
    if not segment:
        raise ValueError(f"the {what} gives an empty path segment")
    return segment


def _prefix_parts(prefix):
    return [_segment(p, "prefix") for p in (prefix or "").split("/") if p.strip("./")]


def models_root(prefix):
    """The folder every artifact key starts with: ``[prefix/]models``."""
    return "/".join([*_prefix_parts(prefix), "models"])


def object_key(prefix, owner, model, version, filename):
    """``[prefix/]models/<owner>/<model>/<version>/<filename>``, every part
    safe. ``owner`` keeps tenants apart (the addon passes ``c<company id>``),
    so two companies' models of one name never share a key."""
    parts = [
        models_root(prefix),
        _segment(owner, "owner"),
        _segment(model, "model"),
        _segment(version, "version"),
        sanitize_filename(filename),
    ]
    return "/".join(parts)


def inference_log_key(prefix, owner, model, deployment, name):
    """``[prefix/]inference-log/<owner>/<model>/<deployment>/<name>.jsonl``:
    a deployment's inference log, beside the models and apart from them."""
    parts = [
        *_prefix_parts(prefix),
        "inference-log",
        _segment(owner, "owner"),
        _segment(model, "model"),
        _segment(deployment, "deployment"),
        sanitize_filename(f"{name}.jsonl"),
    ]
    return "/".join(parts)


def feedback_export_key(prefix, owner, model, export_id):
    """``[prefix/]feedback-export/<owner>/<model>/<export id>.jsonl``: a
    model's feedback with its calls, for retraining."""
    parts = [
        *_prefix_parts(prefix),
        "feedback-export",
        _segment(owner, "owner"),
        _segment(model, "model"),
        sanitize_filename(f"{export_id}.jsonl"),
    ]
    return "/".join(parts)


class _Store:
    def put_stream(self, key, stream, content_type=None, max_size=None):
        """Copy a readable binary stream into the store."""
        writer = self.open_writer(key, content_type, max_size)
        try:
            while chunk := stream.read(CHUNK_SIZE):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    def put_bytes(self, key, data, content_type=None):
        return self.put_stream(key, io.BytesIO(data), content_type)

    def hash_object(self, key):
        """Read an object back: (size, sha256)."""
        sha = hashlib.sha256()
        size = 0
        with self.open(key) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                size += len(chunk)
                sha.update(chunk)
        return size, sha.hexdigest()


class _Writer:
    """What ``open_writer`` returns: ``write`` chunks, then ``close`` (the
    StoredObject) or ``abort`` (nothing left behind)."""

    def __init__(self, store, key, max_size):
        self.store = store
        self.key = key
        self.max_size = max_size
        self.size = 0
        self._sha = hashlib.sha256()
        self.closed = False

    def _account(self, data):
        self.size += len(data)
        if self.max_size is not None and self.size > self.max_size:
            raise IntegrityMismatch(
                f"the artifact is larger than the announced {self.max_size} bytes"
            )
        self._sha.update(data)

    def _stored(self):
        self.closed = True
        return StoredObject(
            self.key, self.size, self._sha.hexdigest(), self.store.uri(self.key)
        )

    # file-like enough for werkzeug's form parser
    def seek(self, *args):
        return 0

    def tell(self):
        return self.size

    def flush(self):
        return None
