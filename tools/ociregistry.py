"""A real OCI registry for tests and benchmarks: Debian's ``docker-registry``
(distribution 2.8) on loopback, with htpasswd (bcrypt) authentication and a
storage folder of its own; and a base image for ModelCars (Debian's static
busybox: a shell with ``ln``, ``sleep`` and ``cp``), pushed into it.

    with OciRegistry() as registry:
        registry.host, registry.username, registry.password
"""

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from testservers import free_port

USERNAME = "mlops"
PASSWORD = "mlops-registry-secret"
BASE_REPOSITORY = "base/busybox"
BASE_TAG = "1"
BUSYBOX = "/bin/busybox"


class OciRegistry:
    def __init__(self, workdir=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mlops-registry-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = None
        self.process = None
        self.username = USERNAME
        self.password = PASSWORD

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=30):
        binary = shutil.which("docker-registry")
        if not binary:
            raise RuntimeError("docker-registry is missing (Debian: docker-registry)")
        hashed = subprocess.run(
            ["htpasswd", "-Bbn", USERNAME, PASSWORD],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (self.workdir / "htpasswd").write_text(hashed)
        self.port = free_port()
        config = self.workdir / "config.yml"
        config.write_text(
            f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.workdir / "data"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
auth:
  htpasswd:
    realm: mlops-test
    path: {self.workdir / "htpasswd"}
"""
        )
        log = open(self.workdir / "registry.log", "wb")  # noqa: SIM115 - kept open
        self.process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "registry.log").read_text()[-2000:])
            try:
                if (
                    requests.get(f"http://{self.host}/v2/", timeout=2).status_code
                    == 401
                ):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("docker-registry did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def push_base(self, registry, modelcar=None):
        """The ModelCar base: busybox with sh, ln, sleep and cp; returns its
        reference. ``modelcar``: the adapter module (the addon's by default;
        the benchmarks load the adapters on their own)."""
        if modelcar is None:
            from odoo.addons.creativeflow_mlops.adapters import (  # noqa: PLC0415
                modelcar,
            )
        OCI_CONFIG, OCI_LAYER, OCI_MANIFEST = (  # noqa: N806
            modelcar.OCI_CONFIG,
            modelcar.OCI_LAYER,
            modelcar.OCI_MANIFEST,
        )

        if not Path(BUSYBOX).exists():
            raise RuntimeError("busybox is missing (Debian: busybox-static)")
        entries = [("bin/", None, 0o755, ""), ("bin/busybox", BUSYBOX, 0o755, "")]
        entries += [
            (f"bin/{tool}", None, 0, "busybox") for tool in ("sh", "ln", "sleep", "cp")
        ]
        layer = modelcar.tar_layer(entries)
        config = modelcar.json_bytes(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
            }
        )
        config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
        registry.push_blob(BASE_REPOSITORY, layer.digest, reader=layer.reader)
        registry.push_blob(BASE_REPOSITORY, config_digest, data=config)
        manifest = modelcar.json_bytes(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}
                ],
            }
        )
        registry.put_manifest(BASE_REPOSITORY, BASE_TAG, manifest)
        return f"{self.host}/{BASE_REPOSITORY}:{BASE_TAG}"
