"""What the project's tools see: every Odoo test module is imported by its
package (Odoo's own runner, ``--test-enable``, runs only those), and the
benchmark command refuses a name it does not know."""

import ast
import subprocess
import sys

from devstack import REPO

TESTS = REPO / "creativeflow_mlops" / "tests"


def test_every_odoo_test_module_is_imported_by_its_package():
    tree = ast.parse((TESTS / "__init__.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    }
    modules = {path.stem for path in TESTS.glob("test_*.py")}
    assert modules, "no test module found"
    assert modules - imported == set(), "not imported by tests/__init__.py"


def test_benchmarks_run_refuses_an_unknown_name():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "no-such-benchmark"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no benchmark 'no-such-benchmark'" in result.stderr
    assert "registry" in result.stderr and "serve" in result.stderr
