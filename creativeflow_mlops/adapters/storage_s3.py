"""The S3 artifact store: MinIO or any S3, through the ``minio`` SDK, with
timeouts. An artifact goes up while it still arrives, as a single PUT when
small, else as a multipart upload with a few parts in flight; a failure
aborts the upload, so nothing partial is left.
"""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import collections
import hashlib
import io
import itertools
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from urllib3.exceptions import HTTPError as TransportError  # minio's transport

from .storage import (
    StorageRefused,
    StorageUnavailable,
    _Store,
    _Writer,
    sanitize_filename,
)

DEFAULT_PART_SIZE = 16 * 1024 * 1024  # S3 multipart minimum is 5 MiB
DEFAULT_PARALLEL = 3


class S3Store(_Store):
    """MinIO or any S3 through the ``minio`` SDK, with timeouts."""

    kind = "s3"

    def __init__(
        self,
        endpoint,
        access_key,
        secret_key,
        bucket,
        secure=False,
        region=None,
        part_size=DEFAULT_PART_SIZE,
        parallel=DEFAULT_PARALLEL,
        connect_timeout=5,
        read_timeout=60,
        retries=2,
    ):
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.part_size = part_size
        self.parallel = parallel
        self._settings = dict(
            access_key=access_key, secret_key=secret_key, region=region
        )
        self._timeouts = (connect_timeout, read_timeout, retries)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import urllib3
            from minio import Minio

            connect, read, retries = self._timeouts
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=connect, read=read),
                maxsize=8,
                retries=urllib3.Retry(
                    total=retries, backoff_factor=0.2, status_forcelist=[502, 503, 504]
                ),
            )
            self._client = Minio(
                self.endpoint, secure=self.secure, http_client=http, **self._settings
            )
        return self._client

    def uri(self, key):
        return f"s3://{self.bucket}/{key}"

    def _translate(self, error, what):
        """Sort an SDK or network error into the store errors."""
        from minio.error import MinioException, S3Error

        if isinstance(error, S3Error):
            message = f"{what}: {error.code}: {error.message}"
            if error.code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                return StorageUnavailable(message, error.code)
            return StorageRefused(message, error.code)
        if isinstance(error, TransportError | ConnectionError | TimeoutError):
            return StorageUnavailable(f"{what}: {self.endpoint} unreachable ({error})")
        if isinstance(error, MinioException):
            return StorageRefused(f"{what}: {error}")
        return None

    def _call(self, what, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            translated = self._translate(error, what)
            if translated is None:
                raise
            raise translated from error

    def check(self):
        exists = self._call(
            "checking the bucket", self.client.bucket_exists, self.bucket
        )
        if not exists:
            raise StorageRefused(f"the bucket {self.bucket} does not exist")
        return {"kind": self.kind, "endpoint": self.endpoint, "bucket": self.bucket}

    def ensure_bucket(self):
        if not self._call(
            "checking the bucket", self.client.bucket_exists, self.bucket
        ):
            self._call("creating the bucket", self.client.make_bucket, self.bucket)

    def open_writer(self, key, content_type=None, max_size=None):
        """A writer that sends parts while data still arrives: a single PUT
        for a small artifact, else a multipart upload with ``parallel`` parts
        in flight. Memory stays about (parallel + 1) x part_size."""
        return _S3Writer(
            self, key, content_type or "application/octet-stream", max_size
        )

    def _upload_part(self, key, upload_id, number, data):
        """Send one part to a presigned URL. A presigned request signs the
        request, not the payload, so the part is not hashed again for the
        signature as the SDK does over plain HTTP (and MD5'd over HTTPS):
        the writer hashes the stream once for the artifact's SHA-256, and
        the integrity scan reads the stored object back against it."""
        what = f"storing part {number} of {key}"
        url = self.presigned_part_url(
            key, upload_id, number, expires=timedelta(minutes=30)
        )
        response = self._call(
            what,
            self.client._http.urlopen,
            "PUT",
            url,
            body=data,
            headers={"Content-Length": str(len(data))},
        )
        if response.status != 200:
            raise self._refusal(response, what)
        etag = response.headers.get("ETag", "").strip('"')
        if not etag:
            raise StorageRefused(f"{what}: the store returned no ETag")
        return {"part_number": number, "etag": etag}

    def _refusal(self, response, what):
        """The store error of an S3 error answer."""
        text = response.data.decode("utf-8", "replace")
        code = re.search(r"<Code>([^<]*)</Code>", text)
        message = re.search(r"<Message>([^<]*)</Message>", text)
        code = code.group(1) if code else f"HTTP {response.status}"
        detail = f"{what}: {code}: {message.group(1) if message else text[:200]}"
        if response.status >= 500 or code in ("SlowDown", "ServiceUnavailable"):
            return StorageUnavailable(detail, code)
        return StorageRefused(detail, code)

    def _abort_quietly(self, key, upload_id):
        try:
            self.client._abort_multipart_upload(self.bucket, key, upload_id)
        except Exception:  # noqa: BLE001 - best effort after a failure
            return

    def _remove_quietly(self, key):
        try:
            self.client.remove_object(self.bucket, key)
        except Exception:  # noqa: BLE001 - best effort after a failure
            return

    def open(self, key):
        response = self._call(
            f"reading {key}", self.client.get_object, self.bucket, key
        )
        return _ResponseReader(response, f"reading {key}")

    def stat(self, key):
        info = self._info(key)
        return info.size if info else None

    def _info(self, key):
        """The store's metadata of an object (size, ETag...), or None."""
        from minio.error import S3Error

        try:
            return self.client.stat_object(self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise self._translate(error, f"stat {key}") from error
        except Exception as error:
            translated = self._translate(error, f"stat {key}")
            if translated is None:
                raise
            raise translated from error

    def delete(self, key):
        self._call(f"deleting {key}", self.client.remove_object, self.bucket, key)

    def local_path(self, key):
        return None

    def hash_object(self, key):
        """(size, sha256) of an object, read back in ranges fetched
        ``parallel`` at a time and hashed in order. Every range is asked
        for the version that was measured (If-Match on its ETag): an object
        replaced during the read is refused, never hashed half and half."""
        info = self._info(key)
        if info is None:
            raise StorageRefused(f"no object {key}", "NoSuchKey")
        size, etag = info.size, info.etag
        ranges = iter(
            (offset, min(self.part_size, size - offset))
            for offset in range(0, size, self.part_size)
        )
        sha = hashlib.sha256()

        def fetch(offset, length):
            response = self._call(
                f"reading {key}",
                self.client.get_object,
                self.bucket,
                key,
                offset=offset,
                length=length,
                request_headers={"If-Match": f'"{etag}"'},
            )
            with _ResponseReader(response, f"reading {key}") as body:
                data = body.read()
            if len(data) != length:
                # a 200 instead of a 206 would hand back the whole object
                raise StorageUnavailable(
                    f"reading {key}: {len(data)} bytes at {offset}, {length} asked"
                )
            return data

        with ThreadPoolExecutor(
            self.parallel + 1, thread_name_prefix="s3-read"
        ) as pool:
            pending = collections.deque(
                pool.submit(fetch, *r)
                for r in itertools.islice(ranges, self.parallel + 1)
            )
            while pending:
                sha.update(pending.popleft().result())
                following = next(ranges, None)
                if following:
                    pending.append(pool.submit(fetch, *following))
        return size, sha.hexdigest()

    def presigned_get(self, key, expires=timedelta(minutes=10), filename=None):
        headers = None
        if filename:
            safe = sanitize_filename(filename)
            headers = {"response-content-disposition": f'attachment; filename="{safe}"'}
        return self._call(
            "signing a download",
            self.client.presigned_get_object,
            self.bucket,
            key,
            expires=expires,
            response_headers=headers,
        )

    # direct multipart upload: the client sends the parts straight to S3

    def create_multipart(self, key, content_type=None):
        headers = {"Content-Type": content_type or "application/octet-stream"}
        return self._call(
            f"starting an upload of {key}",
            self.client._create_multipart_upload,
            self.bucket,
            key,
            headers,
        )

    def presigned_part_url(
        self, key, upload_id, part_number, expires=timedelta(hours=6)
    ):
        return self._call(
            "signing an upload part",
            self.client.get_presigned_url,
            "PUT",
            self.bucket,
            key,
            expires=expires,
            extra_query_params={"uploadId": upload_id, "partNumber": str(part_number)},
        )

    def list_parts(self, key, upload_id, page_size=1000):
        """The parts the store holds for an unfinished upload:
        [{part_number, etag, size}] by part number, read ``page_size`` at a
        time."""
        parts, marker = [], None
        while True:
            result = self._call(
                f"listing the parts of {key}",
                self.client._list_parts,
                self.bucket,
                key,
                upload_id,
                max_parts=page_size,
                part_number_marker=marker,
            )
            parts += [
                {
                    "part_number": part.part_number,
                    "etag": part.etag.strip('"'),
                    "size": part.size,
                }
                for part in result.parts
            ]
            if not result.is_truncated or not result.next_part_number_marker:
                return sorted(parts, key=lambda part: part["part_number"])
            marker = result.next_part_number_marker

    def list_multipart_uploads(self, prefix):
        """Unfinished multipart uploads under ``prefix``:
        [{key, upload_id, initiated}]."""
        found, key_marker, id_marker = [], None, None
        while True:
            result = self._call(
                f"listing the unfinished uploads under {prefix}",
                self.client._list_multipart_uploads,
                self.bucket,
                prefix=prefix,
                key_marker=key_marker,
                upload_id_marker=id_marker,
            )
            found += [
                {
                    "key": upload.object_name,
                    "upload_id": upload.upload_id,
                    "initiated": upload.initiated_time,
                }
                for upload in result.uploads
            ]
            if not result.is_truncated:
                return found
            key_marker = result.next_key_marker
            id_marker = result.next_upload_id_marker

    def complete_multipart(self, key, upload_id, parts):
        from minio.datatypes import Part

        ordered = [Part(int(p["part_number"]), p["etag"]) for p in parts]
        ordered.sort(key=lambda part: part.part_number)
        return self._call(
            f"completing the upload of {key}",
            self.client._complete_multipart_upload,
            self.bucket,
            key,
            upload_id,
            ordered,
        )

    def abort_multipart(self, key, upload_id):
        self._call(
            f"aborting the upload of {key}",
            self.client._abort_multipart_upload,
            self.bucket,
            key,
            upload_id,
        )


class _S3Writer(_Writer):
    def __init__(self, store, key, content_type, max_size):
        super().__init__(store, key, max_size)
        self._content_type = content_type
        self._buffer = collections.deque()
        self._buffered = 0
        self._upload_id = None
        self._pool = None
        self._pending = collections.deque()
        self._parts = []
        self._number = 0
        self._aborted = False
        # the final PUT or CompleteMultipartUpload went unanswered
        self._finishing = False

    def write(self, data):
        try:
            self._account(data)
            self._buffer.append(bytes(data))  # werkzeug reuses its buffer
            self._buffered += len(data)
            while self._buffered >= self.store.part_size:
                self._send_part(self._take(self.store.part_size))
        except BaseException:
            self.abort()
            raise
        return len(data)

    def _take(self, size):
        """The first ``size`` buffered bytes, copied once."""
        taken, used = [], 0
        while self._buffer and used < size:
            chunk = self._buffer.popleft()
            if used + len(chunk) > size:
                cut = size - used
                self._buffer.appendleft(chunk[cut:])
                chunk = chunk[:cut]
            taken.append(chunk)
            used += len(chunk)
        self._buffered -= used
        return b"".join(taken)

    def _send_part(self, data):
        store = self.store
        if self._upload_id is None:
            self._upload_id = store.create_multipart(self.key, self._content_type)
            self._pool = ThreadPoolExecutor(
                store.parallel, thread_name_prefix="s3-part"
            )
        self._number += 1
        self._pending.append(
            self._pool.submit(
                store._upload_part, self.key, self._upload_id, self._number, data
            )
        )
        while len(self._pending) >= store.parallel:
            self._parts.append(self._pending.popleft().result())

    def close(self):
        if self.closed:
            return self._stored()
        store = self.store
        try:
            data = self._take(self._buffered)
            if self._upload_id is None:
                self._finish(
                    store._call,
                    f"storing {self.key}",
                    store.client.put_object,
                    store.bucket,
                    self.key,
                    io.BytesIO(data),
                    len(data),
                    content_type=self._content_type,
                )
            else:
                if data:
                    self._send_part(data)
                while self._pending:
                    self._parts.append(self._pending.popleft().result())
                self._pool.shutdown()
                self._finish(
                    store.complete_multipart, self.key, self._upload_id, self._parts
                )
        except BaseException:
            self.abort()
            raise
        return self._stored()

    def _finish(self, call, *args, **kwargs):
        """The request that makes the object exist. Refused, it made
        nothing; unanswered (the store went away), it may have."""
        try:
            return call(*args, **kwargs)
        except StorageRefused:
            raise
        except BaseException:
            self._finishing = True
            raise

    def abort(self):
        """Remove what this writer sent, even after ``close``: its unfinished
        multipart upload, and the object only when this writer put it there
        (or asked the store to, and the answer was lost), never an object
        another upload wrote at the same key."""
        if self._aborted:
            return
        wrote = self.closed or self._finishing
        self._aborted = self.closed = True
        store = self.store
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
        if self._upload_id:
            store._abort_quietly(self.key, self._upload_id)
        if wrote:
            store._remove_quietly(self.key)
        self._buffer.clear()


class _ResponseReader:
    """A urllib3 response as a closable binary file that refuses a short
    body: what a store cut off reads as ``StorageUnavailable``, never as a
    complete object. urllib3 2 checks the length itself; 1.26 (which Odoo
    18 pins) ends a cut-off body quietly, so the bytes are counted here
    against the Content-Length the store announced."""

    def __init__(self, response, what="reading from the store"):
        self._response = response
        self._what = what
        length = response.headers.get("Content-Length")
        self._expected = int(length) if length and length.isdigit() else None
        self._received = 0

    def read(self, size=-1):
        whole = size is None or size < 0
        try:
            data = self._response.read(None if whole else size)
        except (OSError, TransportError) as error:
            raise StorageUnavailable(f"{self._what}: {error}") from error
        self._received += len(data)
        if (whole or (size and not data)) and self._short():
            raise StorageUnavailable(
                f"{self._what}: the store sent {self._received} of "
                f"{self._expected} bytes"
            )
        return data

    def _short(self):
        return self._expected is not None and self._received < self._expected

    def close(self):
        self._response.close()
        self._response.release_conn()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
