"""The CI providers (adapters.ci) against a local HTTP server that records
the exact requests, compared with each provider's documented API:

- GitLab, "Trigger a pipeline with a token":
  ``POST /api/v4/projects/:id/trigger/pipeline``, form fields ``token``,
  ``ref`` and ``variables[KEY]``; answers 201 with the pipeline (``id``,
  ``web_url``);
- GitHub, "Create a workflow dispatch event":
  ``POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches``,
  ``Accept: application/vnd.github+json``, ``Authorization: Bearer``,
  ``X-GitHub-Api-Version: 2022-11-28``, JSON ``{"ref", "inputs"}`` with at
  most 10 inputs; answers 204;
- Standard Webhooks: verified by the ``standardwebhooks`` package, which
  nobody here wrote.
"""

import json
import shutil
import subprocess
import time
from urllib.parse import parse_qs

import pytest
import standardwebhooks
import testservers

from odoo.addons.creativeflow_mlops.adapters import ci, webhooks

TOKEN = "glptt-0123456789abcdef"  # noqa: S105 (a test's token)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105


def _request(**overrides):
    values = {
        "run_id": 41,
        "deployment_id": 7,
        "model": "sentiment",
        "version": "1.4.0",
        "environment": "staging",
        "strategy": "rolling",
        "replicas": 2,
        "artifact_uri": "s3://models/sentiment/1.4.0/model.onnx",
        "artifact_sha256": "ab" * 32,
        "callback_url": "https://odoo.example/mlops/api/v1/ci/callback",
        "callback_secret": "c0ffee" * 8,
    }
    values.update(overrides)
    return ci.TriggerRequest(**values)


@pytest.fixture
def server():
    with testservers.RecordingServer() as recording:
        yield recording


def test_gitlab_trigger_is_the_documented_request(server):
    server.answer(
        201, {"id": 4711, "web_url": "https://gitlab.example/g/p/-/pipelines/4711"}
    )
    pipeline = ci.GitLabPipeline(
        server.url, token=TOKEN, project="creative/models", ref="release"
    )
    triggered = pipeline.trigger(
        _request(resources={"gpu": 1, "gpu_type": "NVIDIA-A10G", "memory": "8Gi"})
    )

    (sent,) = server.requests
    assert sent["method"] == "POST"
    # a project path is URL-encoded, "/" included
    assert sent["path"] == "/api/v4/projects/creative%2Fmodels/trigger/pipeline"
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v for k, (v,) in parse_qs(sent["body"].decode()).items()}
    assert form.pop("token") == TOKEN
    assert form.pop("ref") == "release"
    assert form == {
        "variables[MLOPS_RUN_ID]": "41",
        "variables[MLOPS_DEPLOYMENT_ID]": "7",
        "variables[MLOPS_MODEL]": "sentiment",
        "variables[MLOPS_VERSION]": "1.4.0",
        "variables[MLOPS_ENVIRONMENT]": "staging",
        "variables[MLOPS_STRATEGY]": "rolling",
        "variables[MLOPS_REPLICAS]": "2",
        "variables[MLOPS_ARTIFACT_URI]": "s3://models/sentiment/1.4.0/model.onnx",
        "variables[MLOPS_ARTIFACT_SHA256]": "ab" * 32,
        "variables[MLOPS_CALLBACK_URL]": (
            "https://odoo.example/mlops/api/v1/ci/callback"
        ),
        "variables[MLOPS_CALLBACK_SECRET]": "c0ffee" * 8,
        # one variable, compact JSON with sorted keys, for the job to parse
        "variables[MLOPS_RESOURCES]": (
            '{"gpu":1,"gpu_type":"NVIDIA-A10G","memory":"8Gi"}'
        ),
    }
    # the token travels in the form, never in a header
    assert TOKEN not in json.dumps(sent["headers"])
    assert triggered.external_id == "4711"
    assert triggered.url == "https://gitlab.example/g/p/-/pipelines/4711"


def test_gitlab_numeric_project_and_check(server):
    server.answer(200, {"id": 12, "path_with_namespace": "creative/models"})
    pipeline = ci.GitLabPipeline(server.url + "/", token=TOKEN, project="12")
    assert pipeline.check() == {"project": "creative/models", "ref": "main"}
    (sent,) = server.requests
    assert (sent["method"], sent["path"]) == ("GET", "/api/v4/projects/12")


def test_github_dispatch_is_the_documented_request(server):
    server.answer(204)
    pipeline = ci.GitHubPipeline(
        server.url,
        token="ghp_secret",  # noqa: S106
        project="creative/models",
        workflow="deploy model.yml",
        ref="main",
    )
    triggered = pipeline.trigger(_request())

    (sent,) = server.requests
    assert sent["method"] == "POST"
    assert sent["path"] == (
        "/repos/creative/models/actions/workflows/deploy%20model.yml/dispatches"
    )
    headers = sent["headers"]
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["authorization"] == "Bearer ghp_secret"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["content-type"] == "application/json"
    body = json.loads(sent["body"])
    assert body["ref"] == "main"
    inputs = body["inputs"]
    # GitHub refuses more than 10 inputs, and takes strings
    assert len(inputs) <= ci.GITHUB_MAX_INPUTS
    assert all(isinstance(value, str) for value in inputs.values())
    assert inputs["run_id"] == "41"
    assert inputs["callback_url"] == "https://odoo.example/mlops/api/v1/ci/callback"
    assert "deployment_id" not in inputs
    # no input is left for resources: none asked, none sent
    assert "resources" not in inputs
    assert triggered.external_id == ""
    assert triggered.url.endswith("/repos/creative/models/actions")


def test_github_cannot_be_asked_for_resources(server):
    pipeline = ci.GitHubPipeline(
        server.url,
        token="ghp_secret",  # noqa: S106
        project="creative/models",
        workflow="deploy.yml",
    )
    with pytest.raises(ci.CIRefused, match="10 inputs, all in use"):
        pipeline.trigger(_request(resources={"gpu": 1}))
    # refused before anything is sent
    assert server.requests == []


def test_webhook_is_verified_by_standard_webhooks(server):
    pipeline = ci.WebhookPipeline(
        server.url + "/hooks/deploy", token=SECRET, allow_private=True
    )
    triggered = pipeline.trigger(_request())

    (sent,) = server.requests
    assert (sent["method"], sent["path"]) == ("POST", "/hooks/deploy")
    payload = standardwebhooks.Webhook(SECRET).verify(sent["body"], sent["headers"])
    assert payload["type"] == "mlops.pipeline.requested"
    assert payload["data"]["run_id"] == 41
    assert payload["data"]["callback_secret"] == "c0ffee" * 8
    assert payload["data"]["resources"] == {}
    assert sent["headers"]["webhook-id"] == triggered.external_id
    assert abs(int(sent["headers"]["webhook-timestamp"]) - time.time()) < 60
    # a body changed on the way no longer verifies
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(
            sent["body"].replace(b"41", b"42"), sent["headers"]
        )
    # the test delivery is signed the same way
    check = pipeline.check()
    ping = server.requests[-1]
    assert standardwebhooks.Webhook(SECRET).verify(ping["body"], ping["headers"])[
        "type"
    ] == ("mlops.ping")
    assert check["delivered"] == ping["headers"]["webhook-id"]


def test_a_webhook_secret_that_is_not_standard_is_refused(server):
    with pytest.raises(ci.CIRefused, match="whsec_"):
        ci.WebhookPipeline(
            server.url, token="whsec_not base64!", allow_private=True
        ).trigger(_request())
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ci.CIUnavailable),
        (502, ci.CIUnavailable),
        (429, ci.CIUnavailable),
        (400, ci.CIRefused),
        (401, ci.CIRefused),
        (404, ci.CIRefused),
    ],
)
def test_provider_answers_map_to_retry_or_refusal(server, status, error):
    server.answer(status, {"message": "no such thing"})
    pipeline = ci.GitLabPipeline(server.url, token=TOKEN, project="1")
    with pytest.raises(error) as raised:
        pipeline.trigger(_request())
    assert str(status) in str(raised.value)
    assert "no such thing" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_a_long_answer_is_cut_in_the_error(server):
    server.answer(500, b"x" * 50_000)
    with pytest.raises(ci.CIUnavailable) as raised:
        ci.GitLabPipeline(server.url, token=TOKEN, project="1").trigger(_request())
    assert len(str(raised.value)) < ci.ANSWER_EXCERPT + 100


def test_a_provider_that_is_gone_or_slow(monkeypatch, free_port):
    gone = ci.GitHubPipeline(
        f"http://127.0.0.1:{free_port}",
        token="ghp_secret",  # noqa: S106
        project="o/r",
        workflow="w.yml",
    )
    with pytest.raises(ci.CIUnavailable) as raised:
        gone.trigger(_request())
    assert "cannot be reached" in str(raised.value)
    assert "ghp_secret" not in str(raised.value)

    monkeypatch.setattr(webhooks, "TIMEOUT", (1, 0.3))
    with testservers.RecordingServer() as slow:
        slow.delay = 2
        with pytest.raises(ci.CIUnavailable, match="ReadTimeout"):
            ci.WebhookPipeline(slow.url, token=SECRET, allow_private=True).trigger(
                _request()
            )


def test_the_webhook_provider_is_sent_by_the_webhooks_sender(server):
    """One sender for both: a private address is refused unless allowed,
    and a redirect is not followed (the webhook sender's rules)."""
    with pytest.raises(ci.CIRefused, match="private|loopback"):
        ci.WebhookPipeline(server.url, token=SECRET).trigger(_request())
    assert server.requests == []
    server.answer(302, b"", headers={"Location": "http://169.254.169.254/"})
    with pytest.raises(ci.CIRefused, match="redirects are not followed"):
        ci.WebhookPipeline(server.url, token=SECRET, allow_private=True).trigger(
            _request()
        )
    assert len(server.requests) == 1


def test_every_kind_is_registered():
    assert sorted(ci.CI_KINDS) == ["github", "gitlab", "webhook"]
    assert all(ci.CI_KINDS[kind].kind == kind for kind in ci.CI_KINDS)


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl")
def test_callback_signature_is_what_openssl_computes():
    """docs/ci-providers.md tells a pipeline to sign with openssl: the same
    bytes give the same signature."""
    body = b'{"run_id": 41, "stage": "build", "status": "running"}'
    secret = "c0ffee" * 8
    timestamp = "1764670000"
    openssl = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-r"],
        input=f"{timestamp}.".encode() + body,
        capture_output=True,
        check=True,
    )
    digest = openssl.stdout.split()[0].decode()
    assert ci.callback_signature(secret, timestamp, body) == f"sha256={digest}"
