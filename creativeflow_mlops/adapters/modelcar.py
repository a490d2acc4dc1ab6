"""ModelCar images: an artifact in the layout its runtime reads, as an OCI
image on a base that has a shell with ``ln`` and ``sleep`` (KServe's
modelcar sidecar links the image's model folder where the server reads it,
then sleeps), built in
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

import base64
import hashlib
import io
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .oci_registry import (
    CHUNK,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Reference,
    RegistryRefused,
)

MODELS = "models"


@dataclass
class Layer:
    """An uncompressed tar layer as its parts: bytes (headers, padding) and
    files (path, size) read when sent. Built without writing the tar: the
    artifact is read once for the digest, and once more when pushed."""

    parts: list
    digest: str
    size: int
    # each file's own SHA-256 (hex), read in the same pass
    files: dict = field(default_factory=dict)

    def reader(self):
        return _PartsReader(self.parts)

    def to_json(self):
        return {
            "digest": self.digest,
            "size": self.size,
            "parts": [
                {"bytes": base64.b64encode(p).decode()}
                if isinstance(p, bytes)
                else {"file": str(p[0]), "size": p[1]}
                for p in self.parts
            ],
        }

    @classmethod
    def from_json(cls, data):
        parts = [
            base64.b64decode(p["bytes"]) if "bytes" in p else (p["file"], p["size"])
            for p in data["parts"]
        ]
        return cls(parts, data["digest"], data["size"])


# a file-like class: read is not the ORM's method
# pylint: disable=method-required-super
class _PartsReader:
    """The layer's bytes, read in order (with a length: sent with a
    Content-Length, not chunked)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.size = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
        self.handle = None
        self.index = 0

    def __len__(self):
        return self.size

    def read(self, amount=-1):
        amount = CHUNK if amount is None or amount < 0 else amount
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if isinstance(part, bytes):
                self.index += 1
                if part:
                    return part
                continue
            if self.handle is None:
                self.handle = open(part[0], "rb")  # noqa: SIM115 - closed at its end
            data = self.handle.read(max(amount, CHUNK))
            if data:
                return data
            self.handle.close()
            self.handle = None
            self.index += 1
        return b""

    def close(self):
        if self.handle:
            self.handle.close()


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


def tar_layer(entries):
    """A layer of ``entries``: (path in the image, a local file or None for
    a folder, mode, symlink target or ""), in that order; the same bytes for
    the same files (owners, modes and times fixed)."""
    parts = []
    for name, source, mode, link in entries:
        if link:
            info = _info(name, tarfile.SYMTYPE, mode=0o777, link=link)
        elif source is None:
            info = _info(name, mode=mode)
        else:
            info = _info(name, tarfile.REGTYPE, os.path.getsize(source), mode)
        parts.append(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if source is not None and not link:
            parts.append((str(source), info.size))
            parts.append(b"\0" * (-info.size % tarfile.BLOCKSIZE))
    # the end of the archive: two empty blocks, up to a whole record
    written = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
    end = 2 * tarfile.BLOCKSIZE
    parts.append(b"\0" * (end + (-(written + end) % tarfile.RECORDSIZE)))
    digest, files, size = hashlib.sha256(), {}, 0
    for part in parts:
        if isinstance(part, bytes):
            digest.update(part)
            size += len(part)
            continue
        own = hashlib.sha256()
        # the file's own digest on another core (hashlib lets go of the
        # GIL): the layer costs one pass over the artifact, not two
        with open(part[0], "rb") as handle, ThreadPoolExecutor(1) as helper:
            pending = None
            for chunk in iter(lambda h=handle: h.read(CHUNK), b""):
                if pending:
                    pending.result()
                pending = helper.submit(own.update, chunk)
                digest.update(chunk)
                size += len(chunk)
            if pending:
                pending.result()
        files[part[0]] = own.hexdigest()
    return Layer(parts, f"sha256:{digest.hexdigest()}", size, files)


def model_layer(source, model, filename):
    """The artifact at ``/models/<model>/1/<filename>``."""
    return tar_layer(
        [
            (f"{MODELS}/", None, 0o755, ""),
            (f"{MODELS}/{model}/", None, 0o755, ""),
            (f"{MODELS}/{model}/1/", None, 0o755, ""),
            (f"{MODELS}/{model}/1/{filename}", source, 0o644, ""),
        ],
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
        target.repository, layer.digest, reader=layer.reader
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
