"""bin/install-odoo as a newcomer runs it, and the versions the tests run
with: those Odoo's own requirements pin."""

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from devstack import REPO
from packaging.requirements import Requirement

import odoo

INSTALL = REPO / "bin" / "install-odoo"


def _odoo_source():
    """The source checkout the running Odoo was installed from (editable),
    or None (an Odoo from a package, as in the odoo:18.0 image)."""
    source = Path(odoo.__file__).resolve().parent.parent
    return source if (source / "requirements.txt").is_file() else None


def _pins(requirements):
    """{name: version} of the ``==`` pins that apply to this Python."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        exact = [s.version for s in requirement.specifier if s.operator == "=="]
        if exact:
            pins[requirement.name] = exact[0]
    return pins


def test_usage_without_a_source():
    result = subprocess.run(
        [INSTALL], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "bin/install-odoo ODOO_SOURCE_DIR" in result.stderr


def test_a_folder_that_is_not_odoo_is_refused(tmp_path):
    result = subprocess.run(
        [INSTALL, tmp_path], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "is not an Odoo source checkout" in result.stderr
    assert "git clone --depth 1 --branch 18.0" in result.stderr


def test_the_tests_run_with_the_versions_odoo_pins():
    """What bin/test runs with is what Odoo's requirements install (urllib3
    1.26.5 on Python 3.11, for one), not what a machine gathered."""
    source = _odoo_source()
    if source is None:
        pytest.skip("Odoo is not installed from a source checkout here")
    pins = _pins(source / "requirements.txt")
    assert "urllib3" in pins
    drift = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # optional on this platform
        if installed != version:
            drift[name] = (installed, version)
    assert not drift, f"installed versions differ from Odoo's pins: {drift}"


def test_install_into_a_fresh_virtualenv(tmp_path, pytestconfig):
    """The README's install on a Python that never had Odoo: then Odoo 18
    imports, every pin holds, pip finds no conflict, and a test that needs
    the pinned urllib3 to be right passes there."""
    source = _odoo_source()
    if source is None:
        pytest.skip("Odoo is not installed from a source checkout here")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    result = subprocess.run(
        [INSTALL, source],
        env=dict(os.environ, PYTHON=str(python)),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"Odoo 18\.0 in .*, urllib3 1\.26\.5", result.stderr)
    pins = _pins(source / "requirements.txt")
    script = (
        "import json, sys; from importlib import metadata; "
        "print(json.dumps({n: metadata.version(n) for n in sys.argv[1:]}))"
    )
    versions = subprocess.run(
        [python, "-c", script, "urllib3", "requests", "Werkzeug", "psycopg2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("urllib3", "requests", "Werkzeug", "psycopg2"):
        assert f'"{name}": "{pins[name]}"' in versions, versions
    check = subprocess.run(
        [python, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout
    # the adapter test that failed under urllib3 1.26.5 before it counted bytes
    run = subprocess.run(
        [
            python,
            "-m",
            "pytest",
            f"--odoo-config={pytestconfig.getoption('--odoo-config')}",
            f"--odoo-database={pytestconfig.getoption('--odoo-database')}",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/test_storage_adapter.py",
            "-k",
            "going_away_mid_read or short",
        ],
        cwd=REPO,
        env=dict(os.environ, MLOPS_TEST_NO_S3="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
