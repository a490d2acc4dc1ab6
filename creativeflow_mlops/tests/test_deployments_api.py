# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The deployment routes of REST v1 and the endpoint registry, against the
real local target (its jobs run in the test by trap_jobs)."""

import io
import json
import os
from datetime import timedelta

import requests

from odoo import fields
from odoo.tests import HttpCase, new_test_user, tagged

from odoo.addons.queue_job.job import Job
from odoo.addons.queue_job.tests.common import trap_jobs

from ..lifecycle import APPROVER, MANAGER, USER
from ..services import artifacts as artifact_service
from ..services import serving
from . import artifacts
from .common import LocalTargetCleanup

API = "/mlops/api/v1"
BODY = {
    "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]
}


@tagged("post_install", "-at_install")
class TestDeploymentsApi(LocalTargetCleanup, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.uploader = new_test_user(cls.env, login="dep_uploader", groups=USER)
        cls.approver = new_test_user(cls.env, login="dep_approver", groups=APPROVER)
        cls.keys = {
            user: cls.env["res.users.apikeys"]
            .with_user(user)
            ._generate(None, "tests", fields.Datetime.now() + timedelta(days=1))
            for user in (cls.uploader, cls.approver)
        }
        cls.target = cls.env.ref("creativeflow_mlops.deployment_target_local")
        manager = new_test_user(cls.env, login="dep_manager", groups=MANAGER)
        _key, token = (
            cls.env["mlops.invoke.key"]
            .with_user(manager)
            ._generate({"name": "tests", "environment": "all"})
        )
        cls.auth = {"Authorization": f"Bearer {token}"}
        cls.invoke_token = token

    def _call(self, method, path, user=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if user:
            headers["Authorization"] = f"Bearer {self.keys[user]}"
        return self.opener.request(
            method,
            f"{self.base_url()}{API}{path}",
            headers=headers,
            timeout=60,
            **kwargs,
        )

    def _error(self, response, status, code):
        self.assertEqual(response.status_code, status, response.text)
        self.assertEqual(response.json()["error"]["code"], code, response.text)
        return response.json()["error"]

    def _validated(self, version="1.0.0"):
        with trap_jobs() as trap:
            record = artifact_service.register_upload(
                self.env(user=self.uploader),
                {"model": "rest-deployed", "version": version, "model_format": "onnx"},
                io.BytesIO(artifacts.onnx_mlp()),
                "model.onnx",
            )
            trap.perform_enqueued_jobs()
        self.assertEqual(record.state, "validated")
        return record

    def _run_deploy_jobs(self):
        """Run the stage jobs the request queued, in their chain's order,
        in the test's transaction."""
        queued = self.env["queue.job"].search(
            [("channel", "=", "root.mlops.deploy"), ("state", "!=", "done")],
            order="id",
        )
        self.assertEqual(len(queued), 6)
        done = set()
        while len(done) < len(queued):
            ready = [
                r
                for r in queued
                if r.uuid not in done
                and set(r.dependencies.get("depends_on", [])) <= done
            ]
            self.assertTrue(ready, "a cycle in the stage jobs")
            for record in ready:
                job = Job.load(self.env, record.uuid)
                job.perform()
                job.set_done()
                job.store()
                done.add(record.uuid)

    def test_deploy_then_the_registry_lists_the_endpoint(self):
        version = self._validated()
        path = f"/versions/{version.id}/deploy"
        # bad input changes nothing
        for body, status, code in (
            ({"environment": "production"}, 422, "invalid_input"),
            ({"strategy": "canary"}, 422, "invalid_input"),
            ({"replicas": 0}, 422, "invalid_input"),
            ({"replicas": "2"}, 422, "invalid_input"),
            ({"target": "nope", "reason": "x"}, 404, "not_found"),
            ({"reason": 5}, 422, "invalid_input"),
            ({"resources": "gpu=1"}, 422, "invalid_input"),
            ({"resources": {"cpu": 2}}, 422, "invalid_input"),
        ):
            self._error(
                self._call("POST", path, self.approver, json=body), status, code
            )
        # every wrong resource is named; what the local target cannot give
        # is refused, not dropped
        for resources, details in (
            (
                {"gpu": -1, "cpu": "2k", "memory": "512m", "disk": "1Gi"},
                {
                    "resources.gpu": "an integer from 0 to 16",
                    "resources.cpu": "a positive number of CPUs, "
                    "e.g. 2, 0.5 or 500m (a string)",
                    "resources.memory": "a positive Kubernetes quantity, "
                    "e.g. 512Mi or 8Gi (a string)",
                    "resources.disk": "unknown field",
                },
            ),
            (
                {"gpu": 1, "gpu_type": "NVIDIA-A10G"},
                {"resources.gpu": "the local runtime runs models on the CPU"},
            ),
            (
                {"memory": "8Gi"},
                {"resources.memory": "the local runtime does not cap memory"},
            ),
            (
                {"cpu": "0"},
                {
                    "resources.cpu": "a positive number of CPUs, "
                    "e.g. 2, 0.5 or 500m (a string)",
                },
            ),
        ):
            error = self._error(
                self._call(
                    "POST",
                    path,
                    self.approver,
                    json={"reason": "gpu", "resources": resources},
                ),
                422,
                "invalid_input",
            )
            self.assertEqual(error["details"], details, error)
        # a plain user may not approve
        self._error(
            self._call("POST", path, self.uploader, json={"reason": "mine"}),
            403,
            "forbidden",
        )
        self.assertEqual(version.state, "validated")
        self.assertFalse(version.deployment_ids)
        # promoting before staging: 409 naming the state
        error = self._error(
            self._call(
                "POST", f"/versions/{version.id}/promote", self.approver, json={}
            ),
            409,
            "transition_not_allowed",
        )
        self.assertIn("Validated", error["message"])

        answer = self._call(
            "POST",
            path,
            self.approver,
            json={"reason": "ok", "resources": {"cpu": "1500m"}},
        )
        self.assertEqual(answer.status_code, 202, answer.text)
        self.assertEqual(answer.json()["state"], "requested")
        # a second deploy meanwhile: the state says no
        self._error(
            self._call("POST", path, self.approver, json={"reason": "again"}),
            409,
            "transition_not_allowed",
        )
        self._run_deploy_jobs()
        deployment_id = answer.json()["deployment_id"]
        detail = self._call(
            "GET", f"/deployments/{deployment_id}", self.uploader
        ).json()
        self.assertEqual(detail["state"], "active", detail)
        # one and a half CPUs: the model server runs two threads
        self.assertEqual(detail["resources"], {"cpu": "1500m"})
        rendered = self.target._get_client().render(
            serving.plan(self.env["mlops.deployment"].browse(deployment_id))
        )
        self.assertEqual(rendered["process"]["threads"], min(2, os.cpu_count()))
        self.assertEqual(
            detail["live"], {"ready": True, "message": detail["live"]["message"]}
        )
        self.assertEqual(
            [s["state"] for s in detail["pipeline_run"]["stages"]],
            ["succeeded", "skipped", "skipped", "succeeded", "succeeded", "succeeded"],
        )
        listing = self._call(
            "GET", f"/deployments?version_id={version.id}", self.uploader
        ).json()
        self.assertEqual([d["id"] for d in listing["items"]], [deployment_id])
        self._error(
            self._call("GET", "/deployments?state=bogus", self.uploader),
            422,
            "invalid_input",
        )

        registry = self._call("GET", "/endpoints", self.uploader)
        self.assertEqual(registry.status_code, 200)
        entry = next(
            e for e in registry.json()["items"] if e["model"] == "rest-deployed"
        )
        self.assertEqual(entry["environment"], "staging")
        self.assertEqual(entry["version"], "1.0.0")
        self.assertEqual(entry["traffic"], [{"version": "1.0.0", "percent": 100}])
        self.assertNotIn(self.keys[self.uploader], json.dumps(registry.json()))
        self.assertNotIn(self.invoke_token, json.dumps(registry.json()))
        self.assertEqual(entry["auth"], {"type": "bearer", "header": "Authorization"})
        served = requests.post(
            entry["invoke_url"], json=BODY, headers=self.auth, timeout=10
        )
        self.assertEqual(served.headers["X-MLOps-Version"], "1.0.0")
        self.assertTrue(requests.get(entry["health_url"], timeout=10).ok)
        # unchanged: 304
        again = self._call(
            "GET",
            "/endpoints",
            self.uploader,
            headers={"If-None-Match": registry.headers["ETag"]},
        )
        self.assertEqual(again.status_code, 304)
        self.assertFalse(
            [
                e
                for e in self._call(
                    "GET", "/endpoints?environment=production", self.uploader
                ).json()["items"]
                if e["model"] == "rest-deployed"
            ]
        )

        # PATCH: what the local target can do, the contract's errors otherwise
        path = f"/deployments/{deployment_id}"
        for body, user, status, code in (
            ({}, self.approver, 422, "invalid_input"),
            ({"state": "active"}, self.approver, 422, "invalid_input"),
            ({"replicas": 2}, self.approver, 422, "invalid_input"),
            ({"replicas": True}, self.approver, 422, "invalid_input"),
            ({"replicas": 1}, self.uploader, 403, "forbidden"),
            ({"canary_percent": 20}, self.approver, 409, "transition_not_allowed"),
        ):
            self._error(self._call("PATCH", path, user, json=body), status, code)
        same = self._call("PATCH", path, self.approver, json={"replicas": 1})
        self.assertEqual(same.status_code, 200, same.text)
        self.assertEqual(same.json()["replicas"], 1)

        # undeploy: 204, the entry goes, the URL stops answering
        self._error(
            self._call("DELETE", f"/deployments/{deployment_id}", self.uploader),
            403,
            "forbidden",
        )
        gone = self._call("DELETE", f"/deployments/{deployment_id}", self.approver)
        self.assertEqual(gone.status_code, 204, gone.text)
        self.assertNotEqual(
            self._call(
                "GET",
                "/endpoints",
                self.uploader,
                headers={"If-None-Match": registry.headers["ETag"]},
            ).status_code,
            304,
        )
        self.assertEqual(
            requests.post(
                entry["invoke_url"], json=BODY, headers=self.auth, timeout=10
            ).status_code,
            404,
        )
