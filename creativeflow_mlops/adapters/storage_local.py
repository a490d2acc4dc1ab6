"""The local artifact store: a folder on the Odoo server, the embedded
default. Objects are written to a temporary file and renamed into place, so
a failure leaves nothing half-written.

It also takes direct multipart uploads the way S3 does, so that a client
(the PWA, a script) uploads the same way whatever the store: the parts go to
``<root>/.multipart/<upload id>/`` through URLs that ``part_url`` signs
(the addon's own route receives them), each answered with the MD5 of its
bytes as its ETag, and completing the upload joins them into the object.
"""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from .storage import (
    CHUNK_SIZE,
    IntegrityMismatch,
    StorageRefused,
    StorageUnavailable,
    _Store,
    _Writer,
)

MULTIPART = ".multipart"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class LocalStore(_Store):
    """A folder on the Odoo server: the embedded default."""

    kind = "local"

    def __init__(self, root, part_url=None):
        self.root = Path(root).resolve()
        # (upload_id, part_number, expires) -> the URL a client PUTs a part to
        self.part_url = part_url

    def _path(self, key):
        path = (self.root / PurePosixPath(key)).resolve()
        if self.root not in path.parents:
            raise StorageRefused(f"the key {key!r} leaves the store")
        return path

    def uri(self, key):
        return f"local://{key}"

    def check(self):
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root):
                pass
        except OSError as error:
            raise StorageRefused(f"cannot write in {self.root}: {error}") from error
        return {"kind": self.kind, "root": str(self.root)}

    def open_writer(self, key, content_type=None, max_size=None):
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=".upload-", delete=False
            )
        except OSError as error:
            raise StorageUnavailable(f"writing {key}: {error}") from error
        return _LocalWriter(self, key, path, tmp, max_size)

    def open(self, key):
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as error:
            raise StorageRefused(f"no object {key}") from error
        except OSError as error:
            raise StorageUnavailable(f"reading {key}: {error}") from error

    def stat(self, key):
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key):
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as error:
            raise StorageUnavailable(f"deleting {key}: {error}") from error

    def local_path(self, key):
        """The file itself: scanners read it in place."""
        return self._path(key)

    def presigned_get(self, key, expires=timedelta(minutes=10), filename=None):
        return None

    # ------------------------------------------------------------------
    # Direct multipart uploads, as S3 has them
    # ------------------------------------------------------------------

    def _upload_dir(self, upload_id):
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise StorageRefused(f"no upload {upload_id!r}", code="NoSuchUpload")
        folder = self.root / MULTIPART / upload_id
        if not (folder / "key").is_file():
            raise StorageRefused(f"no upload {upload_id}", code="NoSuchUpload")
        return folder

    def create_multipart(self, key, content_type=None):
        self._path(key)  # the key stays inside the store
        upload_id = uuid.uuid4().hex
        folder = self.root / MULTIPART / upload_id
        try:
            folder.mkdir(parents=True)
            (folder / "key.tmp").write_text(key, encoding="utf-8")
            os.replace(folder / "key.tmp", folder / "key")
        except OSError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise StorageUnavailable(f"starting an upload of {key}: {error}") from error
        return upload_id

    def presigned_part_url(
        self, key, upload_id, part_number, expires=timedelta(hours=6)
    ):
        if self.part_url is None:
            raise StorageRefused("this local store has no URL to receive parts at")
        self._upload_dir(upload_id)
        return self.part_url(upload_id, part_number, expires)

    def put_part(self, upload_id, part_number, stream, length, max_size):
        """Write part ``part_number`` from ``stream`` (``length`` bytes, at
        most ``max_size``); its ETag (MD5 hex, as S3 gives). A part sent
        again replaces the earlier one; a short body keeps nothing."""
        if not isinstance(part_number, int) or part_number < 1:
            raise StorageRefused(f"no part {part_number!r}", code="InvalidPart")
        if length > max_size:
            raise IntegrityMismatch(f"a part is at most {max_size} bytes")
        folder = self._upload_dir(upload_id)
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with tempfile.NamedTemporaryFile(
                dir=folder, prefix=".part-", delete=False
            ) as tmp:
                try:
                    while received < length:
                        chunk = stream.read(min(CHUNK_SIZE, length - received))
                        if not chunk:
                            break
                        received += len(chunk)
                        md5.update(chunk)
                        tmp.write(chunk)
                    if received != length:
                        raise StorageRefused(
                            f"part {part_number}: {received} of {length} bytes "
                            "arrived; send it again",
                            code="IncompleteBody",
                        )
                    tmp.flush()
                    os.fsync(tmp.fileno())
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp.name)
                    raise
            etag = md5.hexdigest()
            # the part, then its ETag: a part is listed once both are there
            os.replace(tmp.name, folder / str(part_number))
            (folder / f"{part_number}.etag.tmp").write_text(etag)
            os.replace(
                folder / f"{part_number}.etag.tmp", folder / f"{part_number}.etag"
            )
        except OSError as error:
            raise StorageUnavailable(f"storing part {part_number}: {error}") from error
        return etag

    def list_parts(self, key, upload_id, page_size=1000):
        folder = self._upload_dir(upload_id)
        parts = []
        try:
            for tag in folder.glob("*.etag"):
                number = tag.name.split(".", 1)[0]
                if not number.isdigit() or not (folder / number).is_file():
                    continue
                parts.append(
                    {
                        "part_number": int(number),
                        "etag": tag.read_text().strip(),
                        "size": (folder / number).stat().st_size,
                    }
                )
        except OSError as error:
            raise StorageUnavailable(f"listing the parts of {key}: {error}") from error
        return sorted(parts, key=lambda part: part["part_number"])

    def list_multipart_uploads(self, prefix):
        found = []
        base = self.root / MULTIPART
        for folder in base.iterdir() if base.is_dir() else ():
            try:
                key = (folder / "key").read_text(encoding="utf-8")
                initiated = datetime.fromtimestamp(folder.stat().st_mtime, UTC)
            except OSError:
                continue
            if key.startswith(prefix):
                found.append(
                    {"key": key, "upload_id": folder.name, "initiated": initiated}
                )
        return found

    def complete_multipart(self, key, upload_id, parts):
        """Join the parts, in order, into the object ``key``; the upload's
        folder goes. An ETag that is not the part's own refuses it all."""
        folder = self._upload_dir(upload_id)
        held = {p["part_number"]: p["etag"] for p in self.list_parts(key, upload_id)}
        ordered = sorted(parts, key=lambda part: int(part["part_number"]))
        for part in ordered:
            if held.get(int(part["part_number"])) != part["etag"]:
                raise StorageRefused(
                    f"part {part['part_number']} is not in the store as given",
                    code="InvalidPart",
                )
        writer = self.open_writer(key)
        try:
            for part in ordered:
                with (folder / str(int(part["part_number"]))).open("rb") as source:
                    while chunk := source.read(CHUNK_SIZE):
                        writer.write(chunk)
        except OSError as error:
            writer.abort()
            raise StorageUnavailable(
                f"completing the upload of {key}: {error}"
            ) from error
        stored = writer.close()
        shutil.rmtree(folder, ignore_errors=True)
        return stored

    def abort_multipart(self, key, upload_id):
        folder = self._upload_dir(upload_id)
        try:
            shutil.rmtree(folder)
        except OSError as error:
            raise StorageUnavailable(
                f"aborting the upload of {key}: {error}"
            ) from error


class _LocalWriter(_Writer):
    def __init__(self, store, key, path, tmp, max_size):
        super().__init__(store, key, max_size)
        self._path = path
        self._tmp = tmp

    def write(self, data):
        try:
            self._account(data)
            self._tmp.write(data)
        except OSError as error:
            self.abort()
            raise StorageUnavailable(f"writing {self.key}: {error}") from error
        except BaseException:
            self.abort()
            raise
        return len(data)

    def close(self):
        if self.closed:
            return self._stored()
        try:
            self._tmp.flush()
            os.fsync(self._tmp.fileno())
            self._tmp.close()
            os.replace(self._tmp.name, self._path)
        except OSError as error:
            self.abort()
            raise StorageUnavailable(f"writing {self.key}: {error}") from error
        return self._stored()

    def abort(self):
        """Remove what this writer wrote, even after ``close``; never a file
        it did not write."""
        completed = self.closed
        self.closed = True
        self._tmp.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp.name)
        if completed:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        # and the folders made for it, when nothing else is in them
        folder = self._path.parent
        while folder != self.store.root and self.store.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
