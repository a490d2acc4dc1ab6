"""The system tier: the product run as users run it, driven from outside.

Each module gets its own stack: a real S3 server (SeaweedFS) that a test may
kill, and an Odoo server process started as ``bin/serve`` starts it, with
queue_job's runner at two channels, on a fresh copy of the database
``bin/test`` installed. Tests speak REST with API keys and the web
client's JSON-RPC; nothing here touches the ORM.
"""

import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import devstack
import gitserver
import kubeserver
import ociregistry
import pytest
import systemstack
import testservers

WATCHDOG_XMLID = "creativeflow_mlops.ir_cron_validation_watchdog"
CI_TOKEN = "sys-trigger-token"  # noqa: S105 (a test's token)
GITOPS_HOOK_SECRET = "sys-gitops-hook-secret"  # noqa: S105 (a test's secret)
# the bare repository of the target sysgit on its git server
REPOSITORY = "sys-ops"


class Stack:
    """What a system test drives: ``server``, ``s3``, ``admin`` (a web
    session), ``rest`` (the REST API with the admin's key)."""

    def __init__(self, workers, state_dir):
        template = os.environ.get("MLOPS_SYSTEM_TEMPLATE_DB")
        if not template:
            pytest.skip("system tests run under bin/test (it makes their database)")
        self.db_settings = devstack.database_settings()
        self.data_dir = Path(os.environ["MLOPS_TEST_DATA_DIR"])
        self.dbname = systemstack.new_database(
            self.db_settings, template, self.data_dir
        )
        # the server's own data directory gets the copy's filestore (the
        # template's asset bundles), or every page logs a missing file
        copied = self.data_dir / "filestore" / self.dbname
        if copied.is_dir():
            shutil.copytree(copied, state_dir / "data" / "filestore" / self.dbname)
        self.s3 = testservers.SeaweedS3(workdir=state_dir / "s3").start()
        self.bucket = f"sys-{uuid.uuid4().hex[:10]}"
        self.minio = testservers.minio_client(self.s3.endpoint)
        self.minio.make_bucket(self.bucket)
        self.server = systemstack.OdooServer(
            self.db_settings,
            self.dbname,
            state_dir,
            workers=workers,
            env={
                "MLOPS_STORAGE_SYS_ACCESS_KEY": testservers.ACCESS_KEY,
                "MLOPS_STORAGE_SYS_SECRET_KEY": testservers.SECRET_KEY,
                # the kubernetes target of code "cluster" (test_kubernetes.py)
                "MLOPS_TARGET_CLUSTER_TOKEN": kubeserver.ADMIN_TOKEN,
                # its pods' S3 init container reads the stack's bucket
                "MLOPS_TARGET_CLUSTER_S3_ACCESS_KEY": testservers.ACCESS_KEY,
                "MLOPS_TARGET_CLUSTER_S3_SECRET_KEY": testservers.SECRET_KEY,
                # the gitops target of code "sysgit" (test_gitops.py)
                "MLOPS_TARGET_SYSGIT_TOKEN": gitserver.PASSWORD,
                "MLOPS_TARGET_SYSGIT_HOOK_SECRET": GITOPS_HOOK_SECRET,
                "MLOPS_TARGET_SYSGIT_REGISTRY_USERNAME": ociregistry.USERNAME,
                "MLOPS_TARGET_SYSGIT_REGISTRY_PASSWORD": ociregistry.PASSWORD,
                # the CI provider of code "syslab" (test_ci_callback.py)
                "MLOPS_CI_SYSLAB_TOKEN": CI_TOKEN,
                # a cron set due now (set_cron) wakes Odoo's cron thread at
                # once instead of at its next minute's poll
                "ODOO_NOTIFY_CRON_CHANGES": "1",
            },
            name=f"odoo-w{workers}",
        )
        self.server.start()
        self.login()
        self._provision()

    def login(self):
        self.admin = systemstack.WebSession(
            self.server.url, self.dbname, "admin", "admin"
        )

    def _provision(self):
        admin = self.admin
        local = admin.call(
            "mlops.storage.backend", "search", [("is_default", "=", True)]
        )
        admin.call("mlops.storage.backend", "write", local, {"is_default": False})
        admin.call(
            "mlops.storage.backend",
            "create",
            {
                "name": "System S3",
                "code": "sys",
                "kind": "s3",
                "endpoint": self.s3.endpoint,
                "bucket": self.bucket,
                "secure": False,
                "is_default": True,
            },
        )
        # fewer benchmark runs: the tests look at verdicts, not timings
        admin.call(
            "ir.config_parameter", "set_param", "creativeflow_mlops.benchmark_runs", 3
        )
        # the local deployment target's router on a port of this stack's own
        target = admin.call(
            "mlops.deployment.target", "search", [("code", "=", "local")]
        )
        admin.call(
            "mlops.deployment.target",
            "write",
            target,
            {"options": {"router_port": devstack.free_port()}},
        )
        self.rest = systemstack.RestClient(self.server.url, admin.make_api_key())
        self.set_watchdog(active=False)

    def set_watchdog(self, active, minutes=5):
        """The watchdog cron off (tests that must settle without it) or on,
        due now and every ``minutes``."""
        return self.set_cron(WATCHDOG_XMLID, active, minutes)

    def record_id(self, xmlid):
        """The id of the record an xml id names."""
        module, name = xmlid.split(".")
        (data,) = self.admin.call(
            "ir.model.data",
            "search_read",
            [("module", "=", module), ("name", "=", name)],
            fields=["res_id"],
        )
        return data["res_id"]

    def set_cron(self, xmlid, active, minutes=1):
        """A cron off, or on, due now and every ``minutes``."""
        cron = self.record_id(xmlid)
        values = {"active": active, "interval_number": minutes}
        if active:
            # now, not long ago: Odoo steps a past nextcall forward one
            # interval at a time
            values["nextcall"] = datetime.now(timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        for _attempt in range(60):
            try:
                return self.admin.call("ir.cron", "write", [cron], values)
            except systemstack.RpcError as error:
                if "currently being executed" not in str(error):
                    raise
                time.sleep(1)  # the cron runs now: it is locked until it ends
        raise TimeoutError("the watchdog cron stayed locked for a minute")

    def cron_lastcall(self, xmlid):
        """When the cron last ran to its end (Odoo's ``lastcall``), or None."""
        (cron,) = self.admin.call(
            "ir.cron", "read", [self.record_id(xmlid)], ["lastcall"]
        )
        return cron["lastcall"] or None

    def wait_cron_ran(self, xmlid, before, timeout=120):
        """Wait until the cron has run to its end since it last had
        ``before`` as its ``lastcall``: proof it ran, not a sleep."""
        return systemstack.wait_for(
            lambda: (self.cron_lastcall(xmlid) or "") > (before or ""),
            timeout=timeout,
            every=1,
        )

    def wait_with_watchdog(self, version_ids, timeout):
        """Wait for the versions to settle with the watchdog on (every
        minute) and for it to have run, then turn it off again."""
        last = self.cron_lastcall(WATCHDOG_XMLID)
        self.set_watchdog(active=True, minutes=1)
        try:
            states = self.rest.wait_settled(version_ids, timeout=timeout)
            # proof the watchdog ran meanwhile, not only that time passed
            self.wait_cron_ran(WATCHDOG_XMLID, last)
            return states
        finally:
            self.set_watchdog(active=False)

    def jobs(self, domain=()):
        return self.admin.call(
            "queue.job",
            "search_read",
            [("model_name", "like", "mlops."), *domain],
            fields=["state", "identity_key", "exc_name", "retry", "method_name"],
        )

    def objects(self, prefix=""):
        return list(self.minio.list_objects(self.bucket, prefix=prefix, recursive=True))

    def user(self, login, groups):
        """A user of ``groups`` (xml ids) and their REST client."""
        group_ids = [self.record_id(xmlid) for xmlid in groups]
        self.admin.call(
            "res.users",
            "create",
            {
                "name": login,
                "login": login,
                "email": f"{login}@example.com",
                "password": f"{login}-pw-1",
                "groups_id": [(6, 0, group_ids)],
            },
        )
        session = systemstack.WebSession(
            self.server.url, self.dbname, login, f"{login}-pw-1"
        )
        return systemstack.RestClient(self.server.url, session.make_api_key())

    def close(self):
        self.server.stop()
        # the model servers and the router outlive Odoo by design (a
        # restarted Odoo adopts them): this stack's go with it
        systemstack.stop_runtime(self.server.state_dir / "data")
        self.s3.__exit__(None, None, None)
        devstack.drop_database(self.db_settings, self.dbname, self.data_dir)


def _stack(request, tmp_path_factory, workers):
    stack = Stack(workers, tmp_path_factory.mktemp(f"system-w{workers}"))
    request.addfinalizer(stack.close)
    return stack


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """Threaded Odoo (workers=0), the runner at two channels."""
    return _stack(request, tmp_path_factory, workers=0)


@pytest.fixture(scope="module")
def prefork_stack(request, tmp_path_factory):
    """Prefork Odoo (--workers 2), the runner in its own process."""
    return _stack(request, tmp_path_factory, workers=2)


@pytest.fixture(scope="module")
def invoke(stack):
    """Headers with an invoke key, made as a Manager makes one: the wizard
    shows it once."""
    wizard = stack.admin.call(
        "mlops.invoke.key.wizard",
        "create",
        {"name": "system tests", "environment": "all"},
    )
    stack.admin.call("mlops.invoke.key.wizard", "action_generate", [wizard])
    (shown,) = stack.admin.call("mlops.invoke.key.wizard", "read", [wizard], ["key"])
    return {"Authorization": f"Bearer {shown['key']}"}


@pytest.fixture(scope="module")
def gitops(stack, tmp_path_factory):
    """The gitops target ``sysgit`` (test_gitops.py, test_gitops_model.py):
    (its git server, the recording server standing for GitHub)."""
    from odoo.addons.creativeflow_mlops.adapters import (  # noqa: PLC0415
        oci_registry,  # the addon's path is set once the tests run
    )

    work = tmp_path_factory.mktemp("gitops")
    with (
        gitserver.GitServer(work / "git") as git,
        ociregistry.OciRegistry(work / "registry") as oci,
        testservers.RecordingServer() as github,
    ):
        base = oci.push_base(
            oci_registry.Registry(oci.host, oci.username, oci.password, insecure=True)
        )
        stack.admin.call(
            "mlops.deployment.target",
            "create",
            {
                "name": "GitOps",
                "code": "sysgit",
                "kind": "gitops",
                "options": {
                    "repository": git.create(REPOSITORY),
                    "git_username": git.username,
                    "provider": "github",
                    "project": "acme/ops",
                    "api_url": github.url,
                    "public_url": "https://models.example.com",
                    "cluster": {
                        "namespace": "mlops",
                        "registry": f"{oci.host}/mlops",
                        "base_image": base,
                        "registry_insecure": True,
                    },
                },
            },
        )
        yield git, github


@pytest.fixture
def ci_token():
    """The token the stack's Odoo has for the CI provider of code syslab."""
    return CI_TOKEN


@pytest.fixture
def name():
    """A model name of this test's own."""
    return f"sys-{uuid.uuid4().hex[:8]}"
