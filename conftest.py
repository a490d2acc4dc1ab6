"""Session-wide real servers for every test of bin/test.

A real S3 server (SeaweedFS) is started once on loopback; Odoo tests
(TransactionCase) read its address from MLOPS_TEST_S3_* environment
variables, plain tests use the ``s3_server`` fixture.
"""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "tools"))

import testservers  # noqa: E402

import odoo.addons  # noqa: E402

# plain tests import the addon's ORM-free packages as odoo.addons.<addon>
if str(REPO) not in odoo.addons.__path__:
    odoo.addons.__path__.append(str(REPO))

_S3 = None


def pytest_configure(config):
    global _S3
    config.addinivalue_line(
        "markers",
        "system: the product run as users run it (tests/system): a real Odoo "
        "server with its job runner, driven from outside",
    )
    if os.environ.get("MLOPS_TEST_NO_S3"):
        return
    _S3 = testservers.SeaweedS3().start()
    os.environ["MLOPS_TEST_S3_ENDPOINT"] = _S3.endpoint
    os.environ["MLOPS_TEST_S3_ACCESS_KEY"] = testservers.ACCESS_KEY
    os.environ["MLOPS_TEST_S3_SECRET_KEY"] = testservers.SECRET_KEY


def pytest_unconfigure(config):
    if _S3 is not None:
        _S3.__exit__(None, None, None)
    # the model servers and routers the Odoo tests started outlive their
    # Odoo by design: the session's go with it
    data_dir = os.environ.get("MLOPS_TEST_DATA_DIR")
    if data_dir:
        import systemstack  # noqa: PLC0415

        systemstack.stop_runtime(data_dir)


@pytest.fixture(scope="session")
def kube_server():
    """A real kube-apiserver, etcd and kube-controller-manager for the
    session (tools/kubeserver.py; built once by tools/kubebuild.py: when it
    cannot be built, the tests that need it fail with the reason)."""
    import kubeserver  # noqa: PLC0415 - only the tests that need it pay

    server = kubeserver.shared()
    # KServe's InferenceService, installed first: the garbage collector
    # learns of a new resource only at its next discovery (30 s)
    server.install_crd(REPO / "tests" / "k8s" / "inferenceservice_crd.yaml")
    return server


@pytest.fixture(scope="session")
def oci_registry():
    """Debian's docker-registry with htpasswd (tools/ociregistry.py), and
    the ModelCar base image pushed into it (``oci_registry.base``)."""
    import ociregistry  # noqa: PLC0415

    from odoo.addons.creativeflow_mlops.adapters.oci_registry import (  # noqa: PLC0415
        Registry,
    )

    with ociregistry.OciRegistry() as server:
        client = Registry(server.host, server.username, server.password, insecure=True)
        server.base = server.push_base(client)
        yield server


@pytest.fixture(scope="session")
def s3_server():
    if _S3 is None:
        pytest.skip("MLOPS_TEST_NO_S3 is set")
    if _S3.process is None:  # a test stopped it
        _S3.start()
    return _S3
