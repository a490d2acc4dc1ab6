"""Integration tests that cross processes: the README's commands, the
compose file, the linters. They run in the same pytest session as the
addon's Odoo tests (bin/test)."""

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))


@pytest.fixture
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
