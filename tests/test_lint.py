"""The code stays ruff- and pylint-odoo-clean (the CI runs these too)."""

import subprocess
import sys

from devstack import REPO


def test_ruff():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--no-cache"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_pylint_odoo():
    result = subprocess.run(
        [sys.executable, "-m", "pylint", "--rcfile=.pylintrc", "creativeflow_mlops"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
