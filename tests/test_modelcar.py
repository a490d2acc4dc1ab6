"""ModelCar images built in Python and pushed to a real registry (Debian's
docker-registry with htpasswd), then pulled back: the artifact a pod reads
is the one uploaded, byte for byte."""

import base64
import hashlib
import http.server
import io
import json
import tarfile
import threading

import pytest
from addon_artifacts import artifacts

from odoo.addons.creativeflow_mlops.adapters import modelcar
from odoo.addons.creativeflow_mlops.adapters.oci_registry import (
    Reference,
    Registry,
    RegistryRefused,
    RegistryUnavailable,
)
from odoo.addons.creativeflow_mlops.adapters.processes import free_port


@pytest.fixture
def oci(oci_registry):
    return oci_registry


@pytest.fixture
def base(oci_registry):
    return oci_registry.base


def _client(oci, password=None):
    return Registry(
        oci.host, oci.username, password or oci.password, insecure=True, timeout=30
    )


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(artifacts.onnx_mlp())
    return path


def test_the_model_layer_is_a_tar_of_the_same_bytes_for_the_same_artifact(
    tmp_path, model_file
):
    """Its digest is the one of the bytes sent; it reads back as a tar with
    the model at /models/<model>/1/."""
    one = modelcar.model_layer(model_file, "mlp", "model.onnx")
    two = modelcar.model_layer(model_file, "mlp", "model.onnx")
    assert one.digest == two.digest
    sent = one.reader().read(10**9)
    rest = one.reader()
    data = b"".join(iter(lambda: rest.read(65536), b""))
    assert len(data) == one.size == len(rest)
    assert one.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert data.startswith(sent)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == [
            "models",
            "models/mlp",
            "models/mlp/1",
            "models/mlp/1/model.onnx",
        ]
        member = tar.getmember("models/mlp/1/model.onnx")
        assert (member.uid, member.mtime, member.mode) == (0, 0, 0o644)
        assert tar.extractfile(member).read() == model_file.read_bytes()
    assert (
        one.files[str(model_file)]
        == hashlib.sha256(model_file.read_bytes()).hexdigest()
    )


def test_build_push_and_pull_back(oci, base, tmp_path, model_file):
    registry = _client(oci)
    layer = modelcar.model_layer(model_file, "mlp", "model.onnx")
    target = Reference.parse(f"{oci.host}/models/mlp:1.0.0")
    pushed = modelcar.push(
        registry, Reference.parse(base), target, layer, {"model": "mlp"}
    )
    assert pushed.image.startswith(f"{oci.host}/models/mlp@sha256:")
    # the base's layer is mounted from its repository, ours uploaded
    outcomes = sorted(pushed.blobs.values())
    assert outcomes == ["mounted", "uploaded", "uploaded"]
    data = modelcar.read_model(registry, pushed.image, "mlp", "model.onnx")
    assert (
        hashlib.sha256(data).digest()
        == hashlib.sha256(model_file.read_bytes()).digest()
    )
    # the config names every layer, base first
    raw, media, digest = registry.get_manifest("models/mlp", pushed.image.split("@")[1])
    manifest = json.loads(raw)
    assert media == "application/vnd.oci.image.manifest.v1+json"
    assert digest == pushed.image.split("@")[1]
    config = json.loads(registry.get_blob("models/mlp", manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in manifest["layers"]]
    assert config["rootfs"]["diff_ids"][-1] == layer.digest
    # the tag points at it; a second push sends nothing again
    again = modelcar.push(
        registry, Reference.parse(base), target, layer, {"model": "mlp"}
    )
    # (the base's layer is mounted again: for a blob already there that is
    # one call, as a HEAD would be)
    assert again.blobs[layer.digest] == "present"
    assert sorted(again.blobs.values()) == ["mounted", "present", "present"]
    assert again.image == pushed.image


def test_a_declined_mount_copies_the_base_s_layers(oci, base, model_file):
    """A registry that would rather take an upload than lend the base's
    blobs (another registry's policy): they are read from the base and
    uploaded, and the image pulls back whole."""
    registry = _client(oci)
    declined = []

    def decline(repository, digest, source):
        declined.append(digest)
        return False

    registry.mount = decline
    layer = modelcar.model_layer(model_file, "mlp", "model.onnx")
    pushed = modelcar.push(
        registry,
        Reference.parse(base),
        Reference.parse(f"{oci.host}/declined/mlp:1.0.0"),
        layer,
        {"model": "mlp"},
    )
    assert sorted(pushed.blobs.values()) == ["copied", "uploaded", "uploaded"]
    (copied,) = declined
    assert registry.has_blob("declined/mlp", copied)
    assert registry.get_blob("declined/mlp", copied) == registry.get_blob(
        Reference.parse(base).repository, copied
    )
    data = modelcar.read_model(registry, pushed.image, "mlp", "model.onnx")
    assert data == model_file.read_bytes()


def test_a_bad_credential_is_refused_with_the_registry_s_answer(oci, base):
    with pytest.raises(RegistryRefused, match="401.*UNAUTHORIZED"):
        _client(oci, password="wrong").get_manifest("base/busybox", "1")


def test_a_registry_out_of_reach_is_transient():
    registry = Registry(f"127.0.0.1:{free_port()}", insecure=True, timeout=2)
    with pytest.raises(RegistryUnavailable, match="cannot be reached"):
        registry.has_blob("models/mlp", "sha256:" + "0" * 64)


def test_a_bearer_challenge_is_answered_with_a_token():
    """The token flow (distribution's token auth), against a server that
    records what it is sent: the realm asked with the challenge's service
    and scope and the credentials; the call repeated with the token."""
    seen = []
    port = free_port()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, status, body=b"", headers=None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self):  # noqa: N802 - http.server's name
            seen.append(("HEAD", self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != "Bearer tok-1":
                challenge = (
                    f'Bearer realm="http://127.0.0.1:{port}/token",'
                    'service="test-registry",scope="repository:models/mlp:pull,push"'
                )
                return self._answer(401, headers={"WWW-Authenticate": challenge})
            return self._answer(200)

        def do_GET(self):  # noqa: N802
            seen.append(("GET", self.path, self.headers.get("Authorization")))
            body = json.dumps({"token": "tok-1"}).encode()
            self._answer(200, body, {"Content-Type": "application/json"})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = Registry(f"127.0.0.1:{port}", "robot", "s3cret", insecure=True)
        assert registry.has_blob("models/mlp", "sha256:" + "1" * 64)
    finally:
        server.shutdown()
    basic = "Basic " + base64.b64encode(b"robot:s3cret").decode()
    assert seen[0][:2] == ("HEAD", f"/v2/models/mlp/blobs/sha256:{'1' * 64}")
    assert seen[1][0] == "GET" and seen[1][2] == basic
    assert "service=test-registry" in seen[1][1]
    assert "scope=repository%3Amodels%2Fmlp%3Apull%2Cpush" in seen[1][1]
    assert seen[2] == ("HEAD", seen[0][1], "Bearer tok-1")
