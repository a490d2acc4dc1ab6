"""The artifact stores, against a real S3 server (SeaweedFS) and a folder."""

import hashlib
import http.server
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import testservers

from odoo.addons.creativeflow_mlops.adapters.storage import (
    IntegrityMismatch,
    StorageRefused,
    StorageUnavailable,
    models_root,
    object_key,
    sanitize_filename,
)
from odoo.addons.creativeflow_mlops.adapters.storage_local import LocalStore
from odoo.addons.creativeflow_mlops.adapters.storage_s3 import S3Store

MiB = 1024 * 1024


class FailingStream(io.RawIOBase):
    """Yields ``good`` bytes, then calls ``on_fail`` and raises."""

    def __init__(self, good, on_fail=None):
        self._data = io.BytesIO(os.urandom(good))
        self._on_fail = on_fail

    def readable(self):
        return True

    def read(self, size=-1):
        chunk = self._data.read(size)
        if chunk:
            return chunk
        if self._on_fail:
            self._on_fail()
        raise OSError("client went away")


class KillingStream(io.RawIOBase):
    """Yields ``total`` bytes and calls ``on_kill`` once ``kill_after`` were
    read: the store dies while the client is still sending."""

    def __init__(self, total, kill_after, on_kill):
        self._data = io.BytesIO(os.urandom(total))
        self._kill_after = kill_after
        self._on_kill = on_kill

    def readable(self):
        return True

    def read(self, size=-1):
        if self._on_kill and self._data.tell() >= self._kill_after:
            self._on_kill()
            self._on_kill = None
        return self._data.read(size)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("model.onnx", "model.onnx"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/model.onnx", "model.onnx"),
        ("..\\..\\windows\\x.pt", "x.pt"),
        ("a\x00b\x1f.onnx", "ab.onnx"),
        ("my model (final).onnx", "my_model_final_.onnx"),
        ("..hidden", "hidden"),
        # letters of every script stay, in their normal form; emoji do not
        ("мод😀ель.onnx", "мод_ель.onnx"),
        ("Cafe\u0301.onnx", "Caf\u00e9.onnx"),
        ("模型.safetensors", "模型.safetensors"),
        ("a b;$(rm).onnx", "a_b_rm_.onnx"),
    ],
)
def test_sanitize_filename(raw, safe):
    assert sanitize_filename(raw) == safe


@pytest.mark.parametrize("raw", ["", "..", "/", "../", "\x00\x01", None])
def test_sanitize_filename_refuses_nothing_left(raw):
    with pytest.raises(ValueError):
        sanitize_filename(raw)


def test_sanitize_filename_keeps_extension_when_truncating():
    name = sanitize_filename("x" * 500 + ".safetensors")
    assert len(name) == 200 and name.endswith(".safetensors")


def test_object_key_layout():
    assert object_key("", "c1", "sentiment", "1.4.0", "model.onnx") == (
        "models/c1/sentiment/1.4.0/model.onnx"
    )
    assert (
        object_key("team/../a", "c/2", "x y", "1.0", "../m.onnx")
        == "team/a/models/c-2/x-y/1.0/m.onnx"
    )
    assert models_root("team/../a") == "team/a/models"
    with pytest.raises(ValueError):
        object_key("", "c1", "..", "1.0", "m.onnx")
    with pytest.raises(ValueError):
        object_key("", "/", "m", "1.0", "m.onnx")


# ---------------------------------------------------------------------------
# Local
# ---------------------------------------------------------------------------


def test_local_put_hashes_while_streaming(tmp_path):
    store = LocalStore(tmp_path)
    data = os.urandom(3 * MiB + 17)
    stored = store.put_stream("models/m/1/model.bin", io.BytesIO(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.uri == "local://models/m/1/model.bin"
    assert store.hash_object(stored.key) == (len(data), stored.sha256)
    assert store.check()["kind"] == "local"


def test_local_failure_leaves_nothing(tmp_path):
    store = LocalStore(tmp_path)
    # the source failing (a client going away) is not the store's fault
    with pytest.raises(OSError, match="client went away"):
        store.put_stream("models/m/1/model.bin", FailingStream(2 * MiB))
    with pytest.raises(IntegrityMismatch):
        store.put_stream("models/m/1/model.bin", io.BytesIO(b"x" * 100), max_size=10)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert store.stat("models/m/1/model.bin") is None


def test_writers_stream_in_parts_and_abort_cleanly(tmp_path, s3_server):
    local = LocalStore(tmp_path / "local")
    s3 = _store(s3_server)
    s3.ensure_bucket()
    for store in (local, s3):
        data = os.urandom(11 * MiB + 3)
        writer = store.open_writer("models/m/1/w.bin", "application/octet-stream")
        for offset in range(0, len(data), 700_001):
            writer.write(data[offset : offset + 700_001])
        stored = writer.close()
        assert (stored.size, stored.sha256) == (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
        assert store.hash_object(stored.key) == (stored.size, stored.sha256)
        aborted = store.open_writer("models/m/2/w.bin")
        aborted.write(os.urandom(6 * MiB))
        aborted.abort()
        assert store.stat("models/m/2/w.bin") is None
        limited = store.open_writer("models/m/3/w.bin", max_size=10)
        with pytest.raises(IntegrityMismatch):
            limited.write(b"x" * 11)
        assert store.stat("models/m/3/w.bin") is None
    assert [p.name for p in (tmp_path / "local").rglob("*") if p.is_file()] == ["w.bin"]


def test_abort_removes_only_what_the_writer_wrote(tmp_path, s3_server):
    """A second upload to a key aborts (a duplicate refused after its body
    arrived): the first upload's object stays. After its own close, abort
    removes the object it wrote."""
    local = LocalStore(tmp_path / "local")
    s3 = _store(s3_server)
    s3.ensure_bucket()
    for store in (local, s3):
        first = store.put_stream("models/m/1/a.bin", io.BytesIO(b"first" * 1000))
        for size in (100, 7 * MiB):  # a single PUT, a multipart upload
            second = store.open_writer("models/m/1/a.bin")
            second.write(os.urandom(size))
            second.abort()
            assert store.hash_object(first.key) == (first.size, first.sha256)
        third = store.open_writer("models/m/1/b.bin")
        third.write(b"third")
        third.close()
        third.abort()
        assert store.stat("models/m/1/b.bin") is None
    assert sorted(p.name for p in (tmp_path / "local").rglob("*") if p.is_file()) == [
        "a.bin"
    ]


class _DroppingS3(http.server.BaseHTTPRequestHandler):
    """Answers a GET object with a Content-Length it does not honour: the
    store going away in the middle of a read."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(10 * MiB))
        self.send_header("ETag", '"0"')
        self.end_headers()
        self.wfile.write(b"x" * 4096)
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_HEAD(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(10 * MiB))
        self.send_header("ETag", '"0"')
        self.send_header("Last-Modified", "Mon, 23 Nov 2026 10:00:00 GMT")
        self.end_headers()

    def log_message(self, *args):
        return


def _store_at(server):
    return S3Store(
        f"127.0.0.1:{server.server_address[1]}",
        "k",
        "s",
        "bucket",
        region="us-east-1",
        read_timeout=5,
        retries=0,
    )


def test_s3_store_going_away_mid_read_is_unavailable():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DroppingS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = _store_at(server)
        with pytest.raises(StorageUnavailable), store.open("models/m/1/x.bin") as body:
            while body.read(MiB):
                pass
        # hash_object reads ranges in parallel: the same drop, same error
        with pytest.raises(StorageUnavailable):
            store.hash_object("models/m/1/x.bin")
    finally:
        server.shutdown()


class _ShortRangeS3(_DroppingS3):
    """Honours its own Content-Length, but answers a ranged GET with fewer
    bytes than the range asked (a 200 of another object, a proxy's cut)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"x" * 4096
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"0"')
        self.end_headers()
        self.wfile.write(body)


def test_s3_store_short_ranges_are_unavailable():
    """hash_object counts what each range brings against what it asked."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortRangeS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(StorageUnavailable, match="4096 bytes at 0"):
            _store_at(server).hash_object("models/m/1/x.bin")
    finally:
        server.shutdown()


def test_short_reads_are_caught_whatever_urllib3_does():
    """The reader's own count, not urllib3's: 1.26 (Odoo's pin) ends a cut
    body quietly, 2.x raises; both reach the caller as StorageUnavailable."""
    from odoo.addons.creativeflow_mlops.adapters.storage_s3 import _ResponseReader

    class Quiet:
        headers = {"Content-Length": "10"}

        def __init__(self):
            self.parts = [b"12345", b""]

        def read(self, size=None):
            return self.parts.pop(0) if size else b"12345"

    reader = _ResponseReader(Quiet(), "reading k")
    assert reader.read(4) == b"12345"
    with pytest.raises(StorageUnavailable, match="sent 5 of 10 bytes"):
        reader.read(4)
    with pytest.raises(StorageUnavailable, match="sent 5 of 10 bytes"):
        _ResponseReader(Quiet(), "reading k").read()


def test_local_refuses_keys_leaving_the_root(tmp_path):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(StorageRefused):
        store.put_bytes("../outside.bin", b"x")
    assert not (tmp_path / "outside.bin").exists()


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def _store(server, bucket=None, **kwargs):
    bucket = bucket or f"b-{uuid.uuid4().hex[:12]}"
    store = S3Store(
        server.endpoint,
        kwargs.pop("access_key", testservers.ACCESS_KEY),
        kwargs.pop("secret_key", testservers.SECRET_KEY),
        bucket,
        part_size=5 * MiB,
        **{"read_timeout": 20, **kwargs},
    )
    return store


def test_s3_multipart_put_get_and_presigned_download(s3_server):
    store = _store(s3_server)
    store.ensure_bucket()
    data = os.urandom(12 * MiB + 5)
    stored = store.put_stream("models/m/1.0/model.onnx", io.BytesIO(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.uri == f"s3://{store.bucket}/models/m/1.0/model.onnx"
    assert store.stat(stored.key) == len(data)
    assert store.hash_object(stored.key) == (stored.size, stored.sha256)

    url = store.presigned_get(stored.key, filename="model.onnx")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == stored.sha256
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(tampered, timeout=30)
    assert caught.value.code == 403
    store.delete(stored.key)
    assert store.stat(stored.key) is None


def test_s3_keys_with_unicode_names(s3_server):
    """A file name in another script makes a key the store, the hash and a
    presigned download all handle (17 MiB: two parts)."""
    store = _store(s3_server)
    store.ensure_bucket()
    data = os.urandom(17 * MiB)
    key = object_key("", "c1", "m", "1.0", "мод😀ель.onnx")
    assert key == "models/c1/m/1.0/мод_ель.onnx"
    stored = store.put_stream(key, io.BytesIO(data))
    assert store.hash_object(key) == (len(data), stored.sha256)
    url = store.presigned_get(key, filename="мод_ель.onnx")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == stored.sha256
    store.delete(key)


def test_s3_direct_multipart_upload(s3_server):
    store = _store(s3_server)
    store.ensure_bucket()
    key = "models/m/2.0/weights.safetensors"
    parts = [os.urandom(5 * MiB), os.urandom(1 * MiB)]
    upload_id = store.create_multipart(key)
    etags = []
    for number, part in enumerate(parts, start=1):
        url = store.presigned_part_url(key, upload_id, number)
        request = urllib.request.Request(url, data=part, method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            etags.append({"part_number": number, "etag": response.headers["ETag"]})
    store.complete_multipart(key, upload_id, list(reversed(etags)))
    whole = b"".join(parts)
    assert store.hash_object(key) == (len(whole), hashlib.sha256(whole).hexdigest())

    other = store.create_multipart("models/m/3.0/abandoned.bin")
    store.abort_multipart("models/m/3.0/abandoned.bin", other)
    with pytest.raises(StorageRefused):
        store.complete_multipart("models/m/3.0/abandoned.bin", other, etags)


def test_s3_part_uploads_sort_refusals(s3_server):
    """The writer sends parts to presigned URLs itself: the store's error
    answers become the store errors, never a silent bad ETag."""
    store = _store(s3_server)
    store.ensure_bucket()
    key = "models/m/4.0/x.bin"
    with pytest.raises(StorageRefused, match="NoSuchUpload"):
        store._upload_part(key, "no-such-upload", 1, b"x" * 10)
    upload_id = store.create_multipart(key)
    forged = _store(s3_server, bucket=store.bucket, secret_key="not-the-secret")
    with pytest.raises(StorageRefused, match="SignatureDoesNotMatch|AccessDenied"):
        forged._upload_part(key, upload_id, 1, b"x" * 10)
    part = store._upload_part(key, upload_id, 1, b"x" * 10)
    assert part == {"part_number": 1, "etag": hashlib.md5(b"x" * 10).hexdigest()}
    store.abort_multipart(key, upload_id)


def test_s3_list_parts_pages_and_lost_uploads(s3_server):
    store = _store(s3_server)
    store.ensure_bucket()
    key = "models/m/5.0/x.bin"
    upload_id = store.create_multipart(key)
    assert store.list_parts(key, upload_id) == []
    sent = [store._upload_part(key, upload_id, n, bytes([n]) * n) for n in (3, 1, 2)]
    listed = store.list_parts(key, upload_id, page_size=1)
    assert [p["part_number"] for p in listed] == [1, 2, 3]
    assert [p["size"] for p in listed] == [1, 2, 3]
    etags = {p["part_number"]: p["etag"] for p in sent}
    assert all(p["etag"] == etags[p["part_number"]] for p in listed)
    store.abort_multipart(key, upload_id)
    with pytest.raises(StorageRefused) as caught:
        store.list_parts(key, upload_id)
    assert caught.value.code == "NoSuchUpload"


def test_s3_object_replaced_while_hashed_is_refused(s3_server, monkeypatch):
    store = _store(s3_server)
    store.ensure_bucket()
    first = store.put_bytes("models/m/6/x.bin", b"first version")
    measured = store.client.stat_object(store.bucket, first.key)
    store.put_bytes(first.key, b"second version, replaced")
    # the object changes between the stat and the reads
    monkeypatch.setattr(store.client, "stat_object", lambda *args: measured)
    with pytest.raises(StorageRefused, match="PreconditionFailed"):
        store.hash_object(first.key)


def test_s3_wrong_credentials_are_refused(s3_server):
    store = _store(s3_server, secret_key="not-the-secret")
    with pytest.raises(StorageRefused, match="SignatureDoesNotMatch|AccessDenied"):
        store.check()
    with pytest.raises(StorageRefused):
        store.put_bytes("models/m/1/x.bin", b"x")


def test_s3_missing_bucket_is_refused(s3_server):
    store = _store(s3_server, bucket="no-such-bucket-here")
    with pytest.raises(StorageRefused, match="does not exist"):
        store.check()


def test_s3_policy_refusal(tmp_path):
    """A read-only identity: the store answers AccessDenied to a put."""
    identities = [
        {
            "name": "admin",
            "credentials": [{"accessKey": "admin", "secretKey": "admin-secret-key"}],
            "actions": ["Admin", "Read", "Write", "List"],
        },
        {
            "name": "reader",
            "credentials": [{"accessKey": "reader", "secretKey": "reader-secret-key"}],
            "actions": ["Read", "List"],
        },
    ]
    with testservers.SeaweedS3(tmp_path / "s3", identities=identities) as server:
        admin = _store(
            server, bucket="shared", access_key="admin", secret_key="admin-secret-key"
        )
        admin.ensure_bucket()
        reader = _store(
            server, bucket="shared", access_key="reader", secret_key="reader-secret-key"
        )
        assert reader.check()["bucket"] == "shared"
        with pytest.raises(StorageRefused, match="AccessDenied"):
            reader.put_stream("models/m/1/x.bin", io.BytesIO(os.urandom(6 * MiB)))
        assert admin.stat("models/m/1/x.bin") is None


def test_s3_bucket_policy_refusal(s3_server):
    """A bucket policy denying every write, even to the admin identity: small
    and multipart puts and direct parts are refused, nothing is left."""
    store = _store(s3_server)
    store.ensure_bucket()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObject"],
                "Resource": [f"arn:aws:s3:::{store.bucket}/*"],
            }
        ],
    }
    kept = store.put_bytes("models/m/1/kept.bin", b"written before the policy")
    store.client.set_bucket_policy(store.bucket, json.dumps(policy))
    with pytest.raises(StorageRefused, match="AccessDenied"):
        store.put_bytes("models/m/1/small.bin", b"x")
    # a refused write to a key that holds an object leaves that object
    with pytest.raises(StorageRefused, match="AccessDenied"):
        store.put_bytes(kept.key, b"y")
    assert store.hash_object(kept.key) == (kept.size, kept.sha256)
    with pytest.raises(StorageRefused, match="AccessDenied"):
        store.put_stream("models/m/1/big.bin", io.BytesIO(os.urandom(11 * MiB)))
    assert store.stat("models/m/1/small.bin") is None
    assert store.stat("models/m/1/big.bin") is None
    assert [
        o.object_name for o in store.client.list_objects(store.bucket, recursive=True)
    ] == [kept.key]
    with pytest.raises(StorageRefused, match="AccessDenied"):
        upload_id = store.create_multipart("models/m/1/direct.bin")
        store._upload_part("models/m/1/direct.bin", upload_id, 1, b"x" * 10)


def test_s3_unreachable_is_unavailable():
    store = S3Store(
        f"127.0.0.1:{testservers.free_port()}",
        "k",
        "s",
        "bucket",
        connect_timeout=1,
        read_timeout=2,
        retries=0,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.put_bytes("models/m/1/x.bin", b"x")
    assert time.monotonic() - started < 20


def test_s3_killed_mid_upload_leaves_nothing_and_retry_succeeds(tmp_path):
    with testservers.SeaweedS3(tmp_path / "s3") as server:
        store = _store(server, bucket="artifacts", retries=0, read_timeout=5)
        store.ensure_bucket()
        key = "models/m/1.0/model.onnx"
        with pytest.raises(StorageUnavailable):
            # the server dies after two parts while the client still sends
            store.put_stream(key, KillingStream(25 * MiB, 11 * MiB, server.stop))
        server.start()
        assert store.stat(key) is None
        data = os.urandom(7 * MiB)
        stored = store.put_stream(key, io.BytesIO(data))
        assert store.hash_object(key) == (len(data), stored.sha256)


# ---------------------------------------------------------------------------
# Direct multipart uploads to a local store
# ---------------------------------------------------------------------------


def _local_parts_store(tmp_path):
    return LocalStore(
        tmp_path / "store",
        part_url=lambda upload_id, number, expires: f"http://odoo/{upload_id}/{number}",
    )


def test_local_multipart_parts_in_any_order_make_the_object(tmp_path):
    store = _local_parts_store(tmp_path)
    key = "models/c1/m/1.0.0/model.bin"
    upload_id = store.create_multipart(key)
    assert store.presigned_part_url(key, upload_id, 2) == f"http://odoo/{upload_id}/2"
    second = store.put_part(upload_id, 2, io.BytesIO(b"world"), 5, 10)
    store.put_part(upload_id, 1, io.BytesIO(b"HELLO "), 6, 10)
    first = store.put_part(upload_id, 1, io.BytesIO(b"hello "), 6, 10)  # sent again
    assert first == hashlib.md5(b"hello ").hexdigest()
    assert store.list_parts(key, upload_id) == [
        {"part_number": 1, "etag": first, "size": 6},
        {"part_number": 2, "etag": second, "size": 5},
    ]
    assert [u["upload_id"] for u in store.list_multipart_uploads("models/")] == [
        upload_id
    ]
    assert store.list_multipart_uploads("other/") == []
    stored = store.complete_multipart(
        key,
        upload_id,
        [{"part_number": 2, "etag": second}, {"part_number": 1, "etag": first}],
    )
    assert stored.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert store.hash_object(key) == (11, stored.sha256)
    assert store.list_multipart_uploads("") == []
    with pytest.raises(StorageRefused) as refused:
        store.list_parts(key, upload_id)
    assert refused.value.code == "NoSuchUpload"


def test_local_multipart_refusals_keep_nothing(tmp_path):
    store = _local_parts_store(tmp_path)
    key = "models/c1/m/1.0.0/model.bin"
    upload_id = store.create_multipart(key)
    # a body that ends early: no part
    with pytest.raises(StorageRefused) as short:
        store.put_part(upload_id, 1, io.BytesIO(b"abc"), 10, 10)
    assert short.value.code == "IncompleteBody"
    with pytest.raises(IntegrityMismatch):
        store.put_part(upload_id, 1, io.BytesIO(b"x" * 11), 11, 10)
    assert store.list_parts(key, upload_id) == []
    assert [
        p.name for p in (tmp_path / "store" / ".multipart" / upload_id).iterdir()
    ] == ["key"]
    etag = store.put_part(upload_id, 1, io.BytesIO(b"abc"), 3, 10)
    # an ETag that is not the part's refuses the completion, nothing written
    with pytest.raises(StorageRefused):
        store.complete_multipart(key, upload_id, [{"part_number": 1, "etag": "0" * 32}])
    assert store.stat(key) is None
    for bad in ("../../etc", "F" * 32, "0" * 31, None):
        with pytest.raises(StorageRefused) as unknown:
            store.put_part(bad, 1, io.BytesIO(b"abc"), 3, 10)
        assert unknown.value.code == "NoSuchUpload"
    with pytest.raises(StorageRefused):
        store.create_multipart("../outside")
    store.abort_multipart(key, upload_id)
    with pytest.raises(StorageRefused):
        store.complete_multipart(key, upload_id, [{"part_number": 1, "etag": etag}])
    # a store with no part route cannot hand out part URLs
    with pytest.raises(StorageRefused):
        LocalStore(tmp_path / "plain").presigned_part_url(key, upload_id, 1)
