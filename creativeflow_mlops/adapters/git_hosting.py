"""Where a GitOps repository is reviewed: GitHub's pull requests and
GitLab's merge requests, and the hooks they send when one is merged or
closed. Plain Python: no Odoo.

Calls (documented request shapes):

- GitHub, "Create a pull request": ``POST /repos/{owner}/{repo}/pulls``
  with ``{"title", "head", "base", "body"}``, ``Accept:
  application/vnd.github+json``, ``Authorization: Bearer``,
  ``X-GitHub-Api-Version: 2022-11-28``; 201 with ``number`` and
  ``html_url``; 422 when one is open for that head already (then ``GET
  /pulls?head=owner:branch&state=open`` finds it). Closing: ``PATCH
  /repos/{owner}/{repo}/pulls/{number}`` with ``{"state": "closed"}``.
- GitLab, "Create MR": ``POST /api/v4/projects/:id/merge_requests`` with
  ``source_branch``, ``target_branch``, ``title``, ``description``,
  ``remove_source_branch``, ``PRIVATE-TOKEN``; 201 with ``iid`` and
  ``web_url``; 409 when one is open for that branch (then ``GET
  ...?source_branch=&state=opened``). Closing: ``PUT
  .../merge_requests/:iid`` with ``state_event=close``.

Hooks (``parse_github``/``parse_gitlab``): GitHub's ``pull_request`` event
signed in ``X-Hub-Signature-256`` (``sha256=`` and the hex HMAC-SHA256 of
the raw body with the hook's secret), named by ``X-GitHub-Delivery``;
GitLab's ``Merge Request Hook`` carrying the secret token in
``X-Gitlab-Token``, named by ``X-Gitlab-Event-UUID``. Both give a
``ChangeEvent``: merged, closed unmerged, or something else (ignored).
A hook whose event happened more than ``MAX_AGE`` ago is stale.

Argo CD's report (``parse_argocd``): what docs/gitops/argocd-notifications.yaml
makes Argo CD Notifications' webhook service send once an Application has
synced a revision: its source path, revision, sync and health status, the
images it runs, and when it sent it. Argo CD signs nothing: the hook's
secret travels in ``X-MLOps-Token`` (compared in constant time), and a
report sent more than ``MAX_AGE`` ago is stale.
"""

import abc
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import requests

TIMEOUT = (5, 20)
ANSWER_EXCERPT = 300
# a merge hook about an event older than this is refused as stale
MAX_AGE_SECONDS = 600
MAX_HOOK_BYTES = 2 * 1024 * 1024


class HostingError(Exception):
    pass


class HostingUnavailable(HostingError):
    """The provider cannot be reached, or failed: try again later."""


class HostingRefused(HostingError):
    """The provider refused the request: a setting or a token is wrong."""


class HookRefused(Exception):
    """A hook that is not what it claims: forged, malformed or stale."""


class HookMalformed(HookRefused):
    """A hook with the right secret whose body lacks what it must say."""


@dataclass(frozen=True)
class Change:
    """A pull or merge request: its number (GitHub ``number``, GitLab
    ``iid``) and its page."""

    number: int
    url: str
    created: bool = True


@dataclass(frozen=True)
class ChangeEvent:
    provider: str
    delivery: str  # the provider's id of this delivery
    project: str  # owner/repo, or the GitLab project's path
    number: int
    branch: str  # the change's source branch
    # merged, closed (unmerged) or other
    outcome: str
    by: str = ""
    merge_commit: str = ""
    head: str = ""
    at: datetime | None = None


def _excerpt(response):
    return (response.text or "").strip().replace("\n", " ")[:ANSWER_EXCERPT]


class Hosting(abc.ABC):
    kind = None
    label = None

    def __init__(self, url, project, token=None):
        self.url = (url or "").rstrip("/")
        self.project = project
        self.token = token
        self.session = requests.Session()

    @abc.abstractmethod
    def open_change(self, branch, base, title, body): ...

    @abc.abstractmethod
    def close_change(self, number): ...

    @abc.abstractmethod
    def check(self): ...

    def _send(self, method, url, expected=(), **kwargs):
        try:
            response = self.session.request(
                method, url, timeout=TIMEOUT, headers=self._headers(), **kwargs
            )
        except requests.RequestException as error:
            raise HostingUnavailable(
                f"{self.label}: {url} cannot be reached ({type(error).__name__})"
            ) from None
        if response.status_code in expected:
            return response
        if response.status_code >= 500 or response.status_code == 429:
            raise HostingUnavailable(
                f"{self.label} answered {response.status_code}: {_excerpt(response)}"
            )
        if response.status_code >= 400:
            raise HostingRefused(
                f"{self.label} refused the request ({response.status_code}): "
                f"{_excerpt(response)}"
            )
        return response

    @abc.abstractmethod
    def _headers(self): ...


class GitHub(Hosting):
    kind = "github"
    label = "GitHub"
    default_url = "https://api.github.com"

    def _headers(self):
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def _repo(self):
        return f"{self.url}/repos/{self.project}"

    def open_change(self, branch, base, title, body):
        response = self._send(
            "POST",
            f"{self._repo()}/pulls",
            expected=(422,),
            json={"title": title, "head": branch, "base": base, "body": body},
        )
        if response.status_code != 422:
            answer = response.json()
            return Change(int(answer["number"]), answer.get("html_url") or "")
        owner = self.project.split("/", 1)[0]
        found = self._send(
            "GET",
            f"{self._repo()}/pulls",
            params={"head": f"{owner}:{branch}", "state": "open", "base": base},
        ).json()
        if not found:
            raise HostingRefused(
                f"GitHub refused the pull request (422): {_excerpt(response)}"
            )
        return Change(int(found[0]["number"]), found[0].get("html_url") or "", False)

    def close_change(self, number):
        self._send("PATCH", f"{self._repo()}/pulls/{number}", json={"state": "closed"})

    def check(self):
        answer = self._send("GET", self._repo()).json()
        return {"repository": answer.get("full_name") or self.project}


class GitLab(Hosting):
    kind = "gitlab"
    label = "GitLab"
    default_url = "https://gitlab.com"

    def _headers(self):
        return {"PRIVATE-TOKEN": self.token or ""}

    def _project_url(self):
        return f"{self.url}/api/v4/projects/{quote(str(self.project), safe='')}"

    def open_change(self, branch, base, title, body):
        response = self._send(
            "POST",
            f"{self._project_url()}/merge_requests",
            expected=(409,),
            data={
                "source_branch": branch,
                "target_branch": base,
                "title": title,
                "description": body,
                "remove_source_branch": "true",
            },
        )
        if response.status_code != 409:
            answer = response.json()
            return Change(int(answer["iid"]), answer.get("web_url") or "")
        found = self._send(
            "GET",
            f"{self._project_url()}/merge_requests",
            params={"source_branch": branch, "state": "opened"},
        ).json()
        if not found:
            raise HostingRefused(
                f"GitLab refused the merge request (409): {_excerpt(response)}"
            )
        return Change(int(found[0]["iid"]), found[0].get("web_url") or "", False)

    def close_change(self, number):
        self._send(
            "PUT",
            f"{self._project_url()}/merge_requests/{number}",
            data={"state_event": "close"},
        )

    def check(self):
        answer = self._send("GET", self._project_url()).json()
        return {"repository": answer.get("path_with_namespace") or self.project}


PROVIDERS = {cls.kind: cls for cls in (GitHub, GitLab)}


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


def github_signature(secret, body):
    """``X-Hub-Signature-256`` of ``body`` with the hook's ``secret``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _when(text):
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # GitLab's older shape: "2026-12-06 10:00:00 UTC"
        try:
            moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %Z")
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json(body):
    if len(body) > MAX_HOOK_BYTES:
        raise HookRefused("the hook's body is too large")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HookRefused("the hook's body is not JSON") from None
    if not isinstance(payload, dict):
        raise HookRefused("the hook's body is not a JSON object")
    return payload


def _fresh(at, now):
    if at is None:
        raise HookRefused("the hook names no time for its event")
    age = (now - at).total_seconds()
    if age > MAX_AGE_SECONDS or age < -MAX_AGE_SECONDS:
        raise HookRefused(
            f"the hook's event is {int(age)} seconds old: stale "
            f"(at most {MAX_AGE_SECONDS})"
        )


def parse_github(headers, body, secret, now=None):
    """A GitHub ``pull_request`` delivery as a ``ChangeEvent``, or
    ``HookRefused``. ``headers``: lower-case names."""
    if not secret:
        raise HookRefused("no hook secret is set for this target")
    given = headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(given.encode(), github_signature(secret, body).encode()):
        raise HookRefused("X-Hub-Signature-256 does not match the body")
    delivery = headers.get("x-github-delivery", "")
    if not delivery:
        raise HookRefused("X-GitHub-Delivery is missing")
    payload = _json(body)
    event = headers.get("x-github-event", "")
    pull = payload.get("pull_request")
    if event != "pull_request" or not isinstance(pull, dict):
        return ChangeEvent("github", delivery, "", 0, "", "other")
    at = _when(pull.get("closed_at") or pull.get("updated_at"))
    _fresh(at, now or datetime.now(UTC))
    action = payload.get("action")
    outcome = "other"
    if action == "closed":
        outcome = "merged" if pull.get("merged") is True else "closed"
    return ChangeEvent(
        provider="github",
        delivery=delivery,
        project=(payload.get("repository") or {}).get("full_name") or "",
        number=_number(pull.get("number")),
        branch=(pull.get("head") or {}).get("ref") or "",
        outcome=outcome,
        by=(pull.get("merged_by") or payload.get("sender") or {}).get("login") or "",
        merge_commit=pull.get("merge_commit_sha") or "",
        head=(pull.get("head") or {}).get("sha") or "",
        at=at,
    )


def parse_gitlab(headers, body, secret, now=None):
    """A GitLab ``Merge Request Hook`` as a ``ChangeEvent``, or
    ``HookRefused``."""
    if not secret:
        raise HookRefused("no hook secret is set for this target")
    given = headers.get("x-gitlab-token", "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise HookRefused("X-Gitlab-Token is not the hook's secret")
    delivery = headers.get("x-gitlab-event-uuid") or headers.get("idempotency-key")
    if not delivery:
        raise HookRefused("X-Gitlab-Event-UUID is missing")
    payload = _json(body)
    attributes = payload.get("object_attributes")
    if payload.get("object_kind") != "merge_request" or not isinstance(
        attributes, dict
    ):
        return ChangeEvent("gitlab", delivery, "", 0, "", "other")
    at = _when(attributes.get("updated_at"))
    _fresh(at, now or datetime.now(UTC))
    action = attributes.get("action")
    outcome = {"merge": "merged", "close": "closed"}.get(action, "other")
    project = payload.get("project") or {}
    return ChangeEvent(
        provider="gitlab",
        delivery=delivery,
        project=project.get("path_with_namespace") or str(project.get("id") or ""),
        number=_number(attributes.get("iid")),
        branch=attributes.get("source_branch") or "",
        outcome=outcome,
        by=(payload.get("user") or {}).get("username") or "",
        merge_commit=attributes.get("merge_commit_sha") or "",
        head=(attributes.get("last_commit") or {}).get("id") or "",
        at=at,
    )


def _number(value):
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise HookRefused("the hook names no pull or merge request number")


PARSERS = {"github": parse_github, "gitlab": parse_gitlab}


@dataclass(frozen=True)
class SyncReport:
    """Argo CD's word on an Application: the folder it syncs (``path``),
    at ``revision``, ``sync`` (Synced, OutOfSync) and ``health`` (Healthy,
    Progressing, Degraded...) status, and the images it runs."""

    application: str
    path: str
    revision: str
    sync: str
    health: str
    images: tuple
    at: datetime


def parse_argocd(headers, body, secret, now=None):
    """Argo CD Notifications' report as a ``SyncReport``, or
    ``HookRefused``."""
    if not secret:
        raise HookRefused("no hook secret is set for this target")
    given = headers.get("x-mlops-token", "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise HookRefused("X-MLOps-Token is not the hook's secret")
    payload = _json(body)
    at = _when(payload.get("sent_at"))
    _fresh(at, now or datetime.now(UTC))
    images = payload.get("images")
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise HookMalformed("images: a list of image references")
    values = {}
    for name in ("application", "path", "revision", "sync", "health"):
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise HookMalformed(f"{name}: missing, or not a string")
        values[name] = value
    return SyncReport(**values, images=tuple(images), at=at)
