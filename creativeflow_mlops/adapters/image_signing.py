"""A ModelCar image's supply chain in the registry, in the formats cosign
reads and writes. Plain Python: no Odoo.

- ``sign``: cosign's signature of an image (its "simple signing"
  payload, ``critical.image.docker-manifest-digest`` naming the image's
  manifest digest), ECDSA P-256 with SHA-256 over the payload's bytes,
  base64 of the DER signature in the layer's
  ``dev.cosignproject.cosign/signature`` annotation; the payload is that
  layer (``application/vnd.dev.cosign.simplesigning.v1+json``) of an OCI
  manifest tagged ``sha256-<hex>.sig`` in the image's repository. The key
  is a PEM private key (PKCS #8 or SEC 1, unencrypted; cosign's
  ``--key`` takes the same), from the target's secret.
- ``verify``: that tag's signatures checked against a PEM public key (what
  ``cosign verify --key`` checks): the layer's bytes are the payload
  signed, the payload names this digest and cosign's signature type.
- ``attach_sbom``: a CycloneDX 1.5 document (``sbom``: the model with its
  SHA-256, the base image) as the ``sha256-<hex>.sbom`` tag, as ``cosign
  attach sbom --type cyclonedx`` stores it.
"""

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .oci_registry import OCI_MANIFEST, Reference, RegistryRefused

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
CYCLONEDX = "application/vnd.cyclonedx+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class SignatureInvalid(Exception):
    """The image is not signed, or not by the key given."""


def _tag(digest, suffix):
    """``sha256-<hex>.<suffix>``: where cosign keeps an image's ``sig``
    and ``sbom``."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}.{suffix}"


def payload(repository, digest):
    """cosign's simple-signing payload for ``repository`` (host/path)
    at ``digest``, as cosign serializes it."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": digest},
                "type": SIGNATURE_TYPE,
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def _private_key(pem):
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise SignatureInvalid(
            f"the signing key is not a PEM private key: {error}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignatureInvalid("the signing key is not an ECDSA key")
    return key


def _public_key(pem):
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as error:
        raise SignatureInvalid(f"the public key is not PEM: {error}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureInvalid("the public key is not an ECDSA key")
    return key


def _push_artifact(registry, reference, tag, blob, media_type, annotations=None):
    """One-layer OCI manifest holding ``blob``, tagged ``tag``."""
    repository = reference.repository
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest]},
        },
        separators=(",", ":"),
    ).encode()
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    registry.push_blob(repository, digest, data=blob)
    registry.push_blob(repository, config_digest, data=config)
    layer = {"mediaType": media_type, "size": len(blob), "digest": digest}
    if annotations:
        layer["annotations"] = annotations
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [layer],
        },
        separators=(",", ":"),
    ).encode()
    return registry.put_manifest(repository, tag, manifest)


def push_signature(registry, reference, digest, signed, signature):
    """A signature (``signature``: DER bytes over ``signed``) of the image
    at ``digest`` stored where cosign looks for it."""
    return _push_artifact(
        registry,
        reference,
        _tag(digest, "sig"),
        signed,
        SIMPLE_SIGNING,
        {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
    )


def sign(registry, reference, digest, private_key_pem):
    """Sign the image ``reference`` (``oci_registry.Reference``) at
    ``digest``; returns the signature manifest's tag."""
    signed = payload(f"{reference.host}/{reference.repository}", digest)
    signature = _private_key(private_key_pem).sign(signed, ec.ECDSA(hashes.SHA256()))
    push_signature(registry, reference, digest, signed, signature)
    return _tag(digest, "sig")


def verify(registry, reference, digest, public_key_pem):
    """The log line of a signature of ``digest`` by the key, or
    ``SignatureInvalid`` saying why none verifies."""
    key = _public_key(public_key_pem)
    tag = _tag(digest, "sig")
    try:
        body, _type, _digest = registry.get_manifest(reference.repository, tag)
    except RegistryRefused as error:
        raise SignatureInvalid(f"{digest} is not signed ({tag}: {error})") from None
    try:
        layers = json.loads(body).get("layers") or []
    except (ValueError, AttributeError):
        raise SignatureInvalid(f"{tag} is not an OCI manifest") from None
    problems = []
    for layer in layers:
        if layer.get("mediaType") != SIMPLE_SIGNING:
            continue
        blob = registry.get_blob(reference.repository, layer.get("digest", ""))
        if f"sha256:{hashlib.sha256(blob).hexdigest()}" != layer.get("digest"):
            problems.append("a payload is not the blob its digest names")
            continue
        try:
            signature = base64.b64decode(
                (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, ""),
                validate=True,
            )
            key.verify(signature, blob, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            problems.append("a signature is not by this key over its payload")
            continue
        try:
            critical = json.loads(blob)["critical"]
            named = critical["image"]["docker-manifest-digest"]
            kind = critical["type"]
        except (ValueError, KeyError, TypeError):
            problems.append("a payload is not cosign's simple signing")
            continue
        if kind != SIGNATURE_TYPE or named != digest:
            problems.append(f"a signature is of {named}, not {digest}")
            continue
        return f"signature of {digest} verified ({tag})"
    raise SignatureInvalid(
        f"no signature of {digest} verifies: " + ("; ".join(problems) or "none found")
    )


def sbom(reference, digest, model_name, version, artifact_sha256, base_image):
    """A CycloneDX 1.5 SBOM of the ModelCar: the model (its SHA-256) on
    its base image."""
    return json.dumps(
        {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "serialNumber": f"urn:uuid:{uuid.uuid4()}",
            "version": 1,
            "metadata": {
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tools": {
                    "components": [
                        {"type": "application", "name": "creativeflow_mlops"}
                    ]
                },
                "component": {
                    "type": "container",
                    "bom-ref": "image",
                    "name": f"{reference.host}/{reference.repository}",
                    "version": digest,
                },
            },
            "components": [
                {
                    "type": "machine-learning-model",
                    "bom-ref": "model",
                    "name": model_name,
                    "version": version,
                    "hashes": [{"alg": "SHA-256", "content": artifact_sha256}],
                },
                {"type": "container", "bom-ref": "base", "name": base_image},
            ],
            "dependencies": [{"ref": "image", "dependsOn": ["model", "base"]}],
        },
        indent=1,
    ).encode()


def attach_sbom(registry, reference, digest, document):
    """``document`` stored as the image's ``sha256-<hex>.sbom``."""
    _push_artifact(registry, reference, _tag(digest, "sbom"), document, CYCLONEDX)
    return _tag(digest, "sbom")


class Signer:
    """What a target does with the images it pushes and deploys: signs
    each with ``private_key`` (when given) and attaches its SBOM; refuses
    to deploy one whose signature does not verify with ``public_key``
    (when ``required``)."""

    def __init__(self, registry, private_key="", public_key="", required=False):
        self.registry = registry
        self.private_key = private_key
        self.public_key = public_key
        self.required = required

    def pushed(self, image, model_name, version, artifact_sha256, base_image):
        """The log of signing ``image`` (host/repository@digest) and
        attaching its SBOM."""
        reference, digest = _pinned(image)
        document = sbom(
            reference, digest, model_name, version, artifact_sha256, base_image
        )
        said = [f"SBOM {attach_sbom(self.registry, reference, digest, document)}"]
        if self.private_key:
            said.insert(
                0, f"signed {sign(self.registry, reference, digest, self.private_key)}"
            )
        return ", ".join(said)

    def check(self, image):
        """The log of ``image``'s signature verified, "" when none is
        required; ``SignatureInvalid`` when it does not verify."""
        if not self.required:
            return ""
        if not image:
            raise SignatureInvalid("no image to verify: a signature is required")
        reference, digest = _pinned(image)
        return verify(self.registry, reference, digest, self.public_key or "")


def _pinned(image):
    reference = Reference.parse(image)
    if not reference.digest:
        raise SignatureInvalid(f"{image} names no digest: only a digest is signed")
    return reference, reference.digest
