"""The ModelCar's signature and SBOM (adapters.image_signing) in cosign's
formats, on Debian's docker-registry. The independent implementation is
OpenSSL's command line: it verifies the signatures we make over the
payload we store, and signs a payload that our check accepts; a tampered
payload, another key or another digest does not verify."""

import base64
import hashlib
import json
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from odoo.addons.creativeflow_mlops.adapters import image_signing
from odoo.addons.creativeflow_mlops.adapters.oci_registry import (
    OCI_MANIFEST,
    Reference,
    Registry,
)


def _keys():
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )
    return private, public


@pytest.fixture
def image(oci_registry):
    """A small image pushed: (registry client, reference, digest)."""
    registry = Registry(
        oci_registry.host, oci_registry.username, oci_registry.password, insecure=True
    )
    reference = Reference.parse(oci_registry.base)
    _body, _type, digest = registry.get_manifest(reference.repository, reference.tag)
    return registry, reference, digest


def _openssl(*args, data=None):
    return subprocess.run(
        ["openssl", *args], input=data, capture_output=True, check=False, timeout=30
    )


def test_the_signature_is_cosigns_format_and_openssl_verifies_it(image, tmp_path):
    registry, reference, digest = image
    private, public = _keys()
    tag = image_signing.sign(registry, reference, digest, private)
    assert tag == "sha256-" + digest.removeprefix("sha256:") + ".sig"
    body, media_type, _digest = registry.get_manifest(reference.repository, tag)
    manifest = json.loads(body)
    assert media_type == OCI_MANIFEST
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = registry.get_blob(reference.repository, layer["digest"])
    assert json.loads(payload) == {
        "critical": {
            "identity": {
                "docker-reference": f"{reference.host}/{reference.repository}"
            },
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    signature = base64.b64decode(
        layer["annotations"]["dev.cosignproject.cosign/signature"]
    )
    (tmp_path / "pub.pem").write_text(public)
    (tmp_path / "sig.der").write_bytes(signature)
    (tmp_path / "payload").write_bytes(payload)
    checked = _openssl(
        "dgst",
        "-sha256",
        "-verify",
        str(tmp_path / "pub.pem"),
        "-signature",
        str(tmp_path / "sig.der"),
        str(tmp_path / "payload"),
    )
    assert checked.stdout.strip() == b"Verified OK", checked.stderr
    assert "verified" in image_signing.verify(registry, reference, digest, public)


def test_a_signature_openssl_made_verifies_and_tampering_does_not(image, tmp_path):
    registry, reference, digest = image
    (tmp_path / "key.pem").write_bytes(
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout").stdout
    )
    public = _openssl("ec", "-in", str(tmp_path / "key.pem"), "-pubout").stdout
    payload = image_signing.payload(f"{reference.host}/{reference.repository}", digest)
    (tmp_path / "payload").write_bytes(payload)
    signature = _openssl(
        "dgst", "-sha256", "-sign", str(tmp_path / "key.pem"), str(tmp_path / "payload")
    ).stdout
    image_signing.push_signature(registry, reference, digest, payload, signature)
    assert "verified" in image_signing.verify(
        registry, reference, digest, public.decode()
    )

    # another key
    _private, other = _keys()
    with pytest.raises(image_signing.SignatureInvalid, match="not by this key"):
        image_signing.verify(registry, reference, digest, other)
    # the payload changed after signing (another digest named)
    forged = payload.replace(digest.encode(), b"sha256:" + b"0" * 64)
    image_signing.push_signature(registry, reference, digest, forged, signature)
    with pytest.raises(image_signing.SignatureInvalid, match="not by this key"):
        image_signing.verify(registry, reference, digest, public.decode())
    # signed honestly, but for another image
    (tmp_path / "forged").write_bytes(forged)
    signature = _openssl(
        "dgst", "-sha256", "-sign", str(tmp_path / "key.pem"), str(tmp_path / "forged")
    ).stdout
    image_signing.push_signature(registry, reference, digest, forged, signature)
    with pytest.raises(image_signing.SignatureInvalid, match="not " + digest):
        image_signing.verify(registry, reference, digest, public.decode())


def test_an_image_never_signed_is_refused(image):
    registry, reference, _digest = image
    _private, public = _keys()
    unsigned = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    with pytest.raises(image_signing.SignatureInvalid, match="is not signed"):
        image_signing.verify(registry, reference, unsigned, public)
    with pytest.raises(image_signing.SignatureInvalid, match="PEM"):
        image_signing.sign(registry, reference, unsigned, "not a key")


def test_the_sbom_is_cyclonedx_attached_where_cosign_puts_it(image):
    registry, reference, digest = image
    document = image_signing.sbom(
        reference, digest, "sentiment", "1.2.0", "ab" * 32, "registry/base:1"
    )
    tag = image_signing.attach_sbom(registry, reference, digest, document)
    assert tag.endswith(".sbom")
    body, _type, _digest = registry.get_manifest(reference.repository, tag)
    (layer,) = json.loads(body)["layers"]
    assert layer["mediaType"] == "application/vnd.cyclonedx+json"
    bom = json.loads(registry.get_blob(reference.repository, layer["digest"]))
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.5")
    (model,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert model["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert bom["metadata"]["component"]["version"] == digest
