"""CI providers: an external pipeline that brings a deployment up and
reports its stages back through ``POST /ci/callback``. One interface,
``Pipeline``, with a kind per provider, registered in ``CI_KINDS``:

- ``gitlab``: GitLab's pipeline trigger API
  (``POST /api/v4/projects/:id/trigger/pipeline`` with a trigger token,
  the ref and ``variables[...]``);
- ``github``: GitHub Actions' ``workflow_dispatch``
  (``POST /repos/:owner/:repo/actions/workflows/:workflow/dispatches`` with
  a bearer token, the ref and at most 10 string ``inputs``);
- ``webhook``: a POST signed per Standard Webhooks (``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "<id>.<timestamp>.<body>">`` with a ``whsec_`` secret), for any receiver
  (n8n, Jenkins' generic webhook, a bespoke runner).

``trigger(request)`` starts the pipeline and returns what the provider
says of it (``Triggered``); it raises ``CIUnavailable`` when the provider
cannot be reached or answers 5xx or 429 (worth trying again) and
``CIRefused`` when it refuses the request (a 4xx: a wrong token, project
or ref; trying again changes nothing). Every call has a timeout; secrets
never appear in an error's text.

Plain Python: no Odoo.
"""

import abc
import hashlib
import hmac
import json
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

import requests

from . import webhooks

TIMEOUT = (5, 20)  # connect, read (seconds)
# GitHub takes at most 10 workflow_dispatch inputs
GITHUB_MAX_INPUTS = 10
ANSWER_EXCERPT = 300


class CIError(Exception):
    pass


class CIUnavailable(CIError):
    """The provider cannot be reached, or failed: try again later."""


class CIRefused(CIError):
    """The provider refused the request: a setting is wrong."""


@dataclass
class TriggerRequest:
    """What the pipeline is told: which version to bring where, and how
    to report back (``callback_url``, signed with ``callback_secret``)."""

    run_id: int
    deployment_id: int
    model: str
    version: str
    environment: str
    strategy: str
    replicas: int
    artifact_uri: str
    artifact_sha256: str
    callback_url: str
    callback_secret: str
    # what each model server asks for: gpu, gpu_type, cpu, memory
    resources: dict = field(default_factory=dict)

    def variables(self):
        """As CI variables: ``MLOPS_RUN_ID=...``, every value a string
        (``MLOPS_RESOURCES`` compact JSON, ``{}`` when none)."""
        return {
            f"MLOPS_{k.upper()}": (
                json.dumps(v, sort_keys=True, separators=(",", ":"))
                if isinstance(v, dict)
                else str(v)
            )
            for k, v in asdict(self).items()
        }


@dataclass
class Triggered:
    external_id: str = ""
    url: str = ""
    message: str = ""


def _excerpt(response):
    text = (response.text or "").strip().replace("\n", " ")
    return text[:ANSWER_EXCERPT]


class Pipeline(abc.ABC):
    kind = None

    def __init__(
        self,
        url,
        token=None,
        project=None,
        ref=None,
        workflow=None,
        allow_private=False,
    ):
        # allow_private: whether a signed webhook may go to a private
        # address (the outbound webhooks' setting)
        self.allow_private = allow_private
        self.url = (url or "").rstrip("/")
        self.token = token
        self.project = project or ""
        self.ref = ref or "main"
        self.workflow = workflow or ""
        self.session = requests.Session()

    @abc.abstractmethod
    def trigger(self, request): ...

    @abc.abstractmethod
    def check(self): ...

    def _send(self, method, url, **kwargs):
        """The provider's answer, or ``CIUnavailable``/``CIRefused``."""
        try:
            response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as error:
            # requests names the URL, never the body or the headers
            raise CIUnavailable(
                f"{self.kind}: {url} cannot be reached ({type(error).__name__})"
            ) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise CIUnavailable(
                f"{self.kind} answered {response.status_code}: {_excerpt(response)}"
            )
        if response.status_code >= 400:
            raise CIRefused(
                f"{self.kind} refused the request ({response.status_code}): "
                f"{_excerpt(response)}"
            )
        return response


class GitLabPipeline(Pipeline):
    kind = "gitlab"

    def _project_url(self):
        # a numeric id or a path (group/project), URL-encoded
        return f"{self.url}/api/v4/projects/{quote(self.project, safe='')}"

    def trigger(self, request):
        data = {"token": self.token, "ref": self.ref}
        data.update({f"variables[{k}]": v for k, v in request.variables().items()})
        response = self._send(
            "POST", f"{self._project_url()}/trigger/pipeline", data=data
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return Triggered(
            external_id=str(answer.get("id") or ""),
            url=answer.get("web_url") or "",
            message=f"GitLab pipeline {answer.get('id', '?')} on {self.ref}",
        )

    def check(self):
        # a trigger token reads nothing: the project answers, or says why
        response = self._send("GET", self._project_url())
        answer = response.json() if response.content else {}
        return {
            "project": answer.get("path_with_namespace") or self.project,
            "ref": self.ref,
        }


class GitHubPipeline(Pipeline):
    kind = "github"

    def _headers(self):
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def _workflow_url(self):
        return (
            f"{self.url}/repos/{self.project}/actions/workflows/"
            f"{quote(self.workflow, safe='')}"
        )

    @staticmethod
    def inputs(request):
        """The workflow's inputs: the request's fields but the deployment id
        (10 at most; the run id finds the deployment) and the resources,
        which no input is left for: asking for some is refused."""
        values = {k: str(v) for k, v in asdict(request).items()}
        values.pop("deployment_id")
        values.pop("resources")
        if request.resources:
            raise CIRefused(
                "a GitHub workflow takes 10 inputs, all in use: it cannot be "
                f"asked for resources ({json.dumps(request.resources)})"
            )
        return values

    def trigger(self, request):
        self._send(
            "POST",
            f"{self._workflow_url()}/dispatches",
            headers=self._headers(),
            json={"ref": self.ref, "inputs": self.inputs(request)},
        )
        # 204: GitHub names no run; the workflow reports with run_id
        return Triggered(
            url=f"{self.url}/repos/{self.project}/actions",
            message=f"GitHub workflow {self.workflow} dispatched on {self.ref}",
        )

    def check(self):
        answer = self._send("GET", self._workflow_url(), headers=self._headers())
        workflow = answer.json()
        return {
            "workflow": workflow.get("path") or self.workflow,
            "state": workflow.get("state", "?"),
        }


class WebhookPipeline(Pipeline):
    """A POST signed per Standard Webhooks, sent by the same sender as the
    outbound webhooks (``adapters.webhooks.deliver``): the address checked
    is the one connected to, and a redirect is not followed."""

    kind = "webhook"

    def post(self, event_type, data):
        message_id = f"msg_{uuid.uuid4().hex}"
        try:
            attempt = webhooks.deliver(
                self.url,
                self.token or "",
                message_id,
                event_type,
                data,
                allow_private=self.allow_private,
            )
        except (webhooks.UnsafeUrl, webhooks.BadSecret) as error:
            raise CIRefused(f"{self.kind}: {error}") from None
        if attempt.ok:
            return message_id
        said = attempt.error or attempt.excerpt[:ANSWER_EXCERPT]
        if not attempt.status:
            raise CIUnavailable(f"{self.kind}: {self.url} cannot be reached ({said})")
        if attempt.status >= 500 or attempt.status == 429:
            raise CIUnavailable(f"{self.kind} answered {attempt.status}: {said}")
        raise CIRefused(f"{self.kind} answered {attempt.status}: {said}")

    def trigger(self, request):
        message_id = self.post("mlops.pipeline.requested", asdict(request))
        return Triggered(
            external_id=message_id, message=f"delivered to {self.url} as {message_id}"
        )

    def check(self):
        message_id = self.post("mlops.ping", {})
        return {"url": self.url, "delivered": message_id}


def callback_signature(secret, timestamp, body):
    """``X-MLOps-Signature`` of a callback: ``sha256=`` and the hex
    HMAC-SHA256 of ``"<timestamp>.<raw body>"`` with the run's secret."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


CI_KINDS = {cls.kind: cls for cls in (GitLabPipeline, GitHubPipeline, WebhookPipeline)}
