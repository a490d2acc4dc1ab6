"""schemathesis, a third-party client, against the live server from its own
/openapi.json: generated requests to every route, with a valid API key;
no answer is a 5xx and every answer conforms to the document (status,
content type, schema). schemathesis runs from a virtualenv of its own
(made once under ``$MLOPS_TOOLS_CACHE``, ``~/.cache/creativeflow-mlops``):
its dependencies are newer than the ones Odoo pins."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

VERSION = "4.32.5"
CHECKS = "all"


def _schemathesis():
    root = Path(
        os.environ.get("MLOPS_TOOLS_CACHE")
        or Path.home() / ".cache" / "creativeflow-mlops"
    )
    venv = root / f"schemathesis-{VERSION}"
    binary = venv / "bin" / "schemathesis"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        installed = subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"schemathesis=={VERSION}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if installed.returncode:
            pytest.fail(f"cannot install schemathesis: {installed.stderr[-2000:]}")
    return binary


def test_generated_requests_get_conforming_answers(stack, tmp_path):
    binary = _schemathesis()
    url = f"{stack.server.url}/mlops/api/v1/openapi.json"
    run = subprocess.run(
        [
            str(binary),
            "run",
            url,
            "--header",
            "Authorization: " + stack.rest.http.headers["Authorization"],
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--request-timeout",
            "60",
            "--no-color",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,  # its crash cache (.schemathesis/) stays out of the clone
    )
    report = run.stdout[-30000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "passed" in run.stdout.lower(), report
