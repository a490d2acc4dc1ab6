"""The repository's reference (docs/reference/) says what the code does:
its lifecycle tables are generated from the code and must be current, and
the code cites the reference, never a document outside the repository."""

import subprocess
import sys

from devstack import REPO


def test_the_lifecycle_reference_is_generated_from_the_code():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "docs" / "reference" / "lifecycle.md").read_text()
    # the generated part is there, with a transition of each table
    assert "| `validated` | `staging_pending` | MLOps Approver |" in text
    assert "| `requested` | `deploying` | the platform |" in text
    assert "| `running` | `cancelled` | the platform |" in text


def test_the_code_cites_the_repository_s_own_reference():
    outside, missing = [], []
    for path in REPO.glob("creativeflow_mlops/**/*.py"):
        text = path.read_text()
        if "shared/contract" in text:
            outside.append(str(path.relative_to(REPO)))
        for cited in {
            word.strip("().,:;\"'`")
            for word in text.split()
            if word.strip("().,:;\"'`").startswith("docs/reference/")
        }:
            if not (REPO / cited).is_file():
                missing.append(f"{path.relative_to(REPO)}: {cited}")
    assert outside == [], "cites a document outside the repository"
    assert missing == [], "cites a reference page that does not exist"
