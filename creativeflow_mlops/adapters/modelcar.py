"""ModelCar images: an artifact in the layout its runtime reads, as an OCI
image on a base that has a shell (KServe's modelcar sidecar runs
``ln -sf /proc/$$/root/models /mnt/models && sleep infinity``), built in
Python (layers are tar files written here; no Docker daemon) and pushed
through ``adapters.oci_registry``. Plain Python: no Odoo.

- ``model_layer``: ``/models/<model>/1/<file>`` (Triton's model repository:
  numeric version folders), as an uncompressed tar whose bytes are the same
  for the same artifact (fixed owners, modes and times);
- ``push``: the base image's manifest and config read from the registry,
  its layers mounted from the base repository (or already present), ours
  uploaded unless present, a config whose ``rootfs.diff_ids`` name every
  layer, the manifest tagged; returns the pinned reference
  (``host/repository@sha256:...``) and what was sent.
"""

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field

from .oci_registry import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Reference,
    RegistryRefused,
)

MODELS = "models"


@dataclass
class Layer:
    path: str
    digest: str
    size: int


@dataclass
class Pushed:
    image: str
    blobs: dict = field(default_factory=dict)  # digest: present/mounted/uploaded

    def summary(self):
        counts = {}
        for outcome in self.blobs.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


def _info(name, kind=tarfile.DIRTYPE, size=0, mode=0o755, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    info.linkname = link
    return info


# a file-like class: write is not the ORM's method
# pylint: disable=method-required-super
class _Hashing:
    """A write-only file that hashes what goes through it."""

    def __init__(self, handle):
        self.handle = handle
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self):
        self.handle.flush()


def tar_layer(entries, destination):
    """A layer of ``entries``: (path in the image, a local file or None for
    a folder, mode, symlink target or ""), in that order."""
    with open(destination, "wb") as raw:
        hashing = _Hashing(raw)
        with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, source, mode, link in entries:
                if link:
                    tar.addfile(_info(name, tarfile.SYMTYPE, mode=0o777, link=link))
                elif source is None:
                    tar.addfile(_info(name, mode=mode))
                else:
                    size = os.path.getsize(source)
                    with open(source, "rb") as handle:
                        tar.addfile(
                            _info(name, tarfile.REGTYPE, size, mode), fileobj=handle
                        )
    return Layer(destination, f"sha256:{hashing.sha.hexdigest()}", hashing.size)


def model_layer(source, model, filename, destination):
    """The artifact at ``/models/<model>/1/<filename>``."""
    return tar_layer(
        [
            (f"{MODELS}/", None, 0o755, ""),
            (f"{MODELS}/{model}/", None, 0o755, ""),
            (f"{MODELS}/{model}/1/", None, 0o755, ""),
            (f"{MODELS}/{model}/1/{filename}", source, 0o644, ""),
        ],
        destination,
    )


def json_bytes(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def push(registry, base, target, layer, labels=None):
    """Push an image of ``base`` (a Reference of this registry) plus
    ``layer`` as ``target`` (a Reference with a tag); returns ``Pushed``."""
    raw, _media, _digest = registry.get_manifest(
        base.repository, base.digest or base.tag or "latest"
    )
    manifest = json.loads(raw)
    if "layers" not in manifest:
        raise RegistryRefused(
            f"{base.repository} is an index or an old manifest: name a "
            "single-platform image as the base"
        )
    config = json.loads(
        registry.get_blob(base.repository, manifest["config"]["digest"])
    )
    pushed = Pushed(image="")
    for descriptor in manifest["layers"]:
        pushed.blobs[descriptor["digest"]] = registry.push_blob(
            target.repository, descriptor["digest"], source=base.repository
        )
    pushed.blobs[layer.digest] = registry.push_blob(
        target.repository, layer.digest, path=layer.path
    )
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = [*config["rootfs"].get("diff_ids", []), layer.digest]
    config.setdefault("history", []).append(
        {
            "created_by": "creativeflow-mlops: the model",
            "created": "1970-01-01T00:00:00Z",
        }
    )
    config.setdefault("config", {}).setdefault("Labels", {}).update(labels or {})
    config_bytes = json_bytes(config)
    config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    pushed.blobs[config_digest] = registry.push_blob(
        target.repository, config_digest, data=config_bytes
    )
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            *(
                {k: d[k] for k in ("mediaType", "digest", "size")}
                for d in manifest["layers"]
            ),
            {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size},
        ],
        "annotations": dict(labels or {}),
    }
    digest = registry.put_manifest(
        target.repository, target.tag or "latest", json_bytes(image_manifest)
    )
    pushed.image = target.pinned(digest)
    return pushed


def read_model(registry, image, model, filename):
    """The artifact's bytes as a pod would find them in ``image`` (the last
    layer holding ``/models/<model>/1/<filename>``)."""
    reference = Reference.parse(image)
    raw, _media, _digest = registry.get_manifest(
        reference.repository, reference.digest or reference.tag
    )
    wanted = f"{MODELS}/{model}/1/{filename}"
    for descriptor in reversed(json.loads(raw)["layers"]):
        blob = registry.get_blob(reference.repository, descriptor["digest"])
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            try:
                member = tar.getmember(wanted)
            except KeyError:
                continue
            return tar.extractfile(member).read()
    raise KeyError(wanted)
