"""The addon's test artifacts (creativeflow_mlops/tests/artifacts.py), by
its path: it imports nothing of Odoo, and these tests import no ORM."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "creativeflow_mlops/tests/artifacts.py"
_SPEC = importlib.util.spec_from_file_location("mlops_addon_artifacts", _PATH)
artifacts = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(artifacts)
