"""docker-compose.yml: the official image, our addon, PostgreSQL, MinIO and an
optional n8n. No Docker engine runs here: the file is parsed and, where
Debian's docker-compose is installed, validated offline."""

import subprocess

import yaml
from devstack import REPO


def test_compose_file_shape():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"odoo", "postgres", "minio", "n8n"}
    assert services["n8n"]["profiles"] == ["n8n"]
    odoo = services["odoo"]
    assert (
        "./creativeflow_mlops:/mnt/extra-addons/creativeflow_mlops:ro"
        in odoo["volumes"]
    )
    assert "./odoo.conf:/etc/odoo/odoo.conf:ro" in odoo["volumes"]
    dockerfile = (REPO / odoo["build"]["dockerfile"]).read_text()
    assert dockerfile.startswith("# ") and "\nFROM odoo:18.0\n" in dockerfile
    assert "requirements.txt" in dockerfile
    assert odoo["environment"]["USER"] != "postgres"
    for port in odoo["ports"] + services["minio"]["ports"]:
        assert port.startswith("127.0.0.1:"), port


def test_compose_file_validates():
    for args in ([], ["--profile", "n8n"]):
        result = subprocess.run(
            ["docker-compose", *args, "config", "-q"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
