"""An OCI registry through the distribution API (v2), with ``requests``:
what pushing a ModelCar image needs, and reading one back. Plain Python:
no Odoo; every call has a timeout.

Authentication follows the registry's challenge: a 401 with
``WWW-Authenticate: Basic`` is answered with the credentials, one with
``Bearer realm=...,service=...,scope=...`` by asking the realm for a token
(with the credentials, when there are some) and sending it. Blobs already
in the repository are not sent again; a blob of another repository of the
same registry is mounted (``?mount=&from=``) instead of uploaded.

Errors: ``RegistryUnavailable`` (no answer, a 5xx or a 429: worth a retry)
and ``RegistryRefused`` (the registry answered no: credentials, a bad
manifest), each with the registry's own answer.
"""

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST])
CHUNK = 1024 * 1024
_REFERENCE = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+(?::[0-9]+)?)/(?P<repository>[a-z0-9._/-]+)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    pass


class RegistryUnavailable(RegistryError):
    """The registry cannot be reached now: worth trying again."""


class RegistryRefused(RegistryError):
    """The registry answered no."""


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text):
        match = _REFERENCE.match(text or "")
        if not match:
            raise ValueError(
                f"{text!r} is not an image reference (host[:port]/repository[:tag])"
            )
        return cls(
            match["host"],
            match["repository"],
            match["tag"] or "",
            match["digest"] or "",
        )

    def pinned(self, digest):
        """``host/repository@digest``: what a pod pulls, immutably."""
        return f"{self.host}/{self.repository}@{digest}"


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class Registry:
    """One registry host."""

    def __init__(self, host, username=None, password=None, insecure=False, timeout=30):
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.credentials = (username, password) if username else None
        self.timeout = timeout
        self.session = requests.Session()
        self._tokens = {}  # scope: bearer token

    # ------------------------------------------------------------------

    def _send(self, method, url, scope, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        headers = dict(kwargs.pop("headers", {}))
        token = self._tokens.get(scope)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self.session.request(method, url, headers=headers, **kwargs)
        except requests.RequestException as error:
            raise RegistryUnavailable(
                f"the registry {self.base} cannot be reached: {error}"
            ) from None

    def request(self, method, path, scope, ok=(200,), body=None, **kwargs):
        """One call, answering the registry's challenge once; ``body``: a
        callable giving the data anew (a retried upload re-reads its file)."""
        url = path if path.startswith("http") else urljoin(self.base, path)
        answer = self._send(method, url, scope, data=body() if body else None, **kwargs)
        if answer.status_code == 401:
            self._authenticate(answer, scope)
            answer = self._send(
                method, url, scope, data=body() if body else None, **kwargs
            )
        if answer.status_code in ok:
            return answer
        message = _problem(answer)
        if answer.status_code in (429, 500, 502, 503, 504):
            raise RegistryUnavailable(
                f"the registry answered {answer.status_code}: {message}"
            )
        raise RegistryRefused(
            f"the registry refused {method} {path.split('?')[0]} "
            f"({answer.status_code}): {message}"
        )

    def _authenticate(self, answer, scope):
        challenge = answer.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if not self.credentials:
                raise RegistryRefused(
                    "the registry asks for credentials (Basic) and none are set"
                )
            self.session.auth = self.credentials
            return
        if kind != "bearer":
            raise RegistryRefused(f"the registry asks for {challenge or 'nothing'}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryRefused("the registry's Bearer challenge names no realm")
        query = {"service": params.get("service", "")}
        query["scope"] = params.get("scope") or scope
        try:
            token_answer = self.session.get(
                realm,
                params=query,
                auth=self.credentials,
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise RegistryUnavailable(
                f"the registry's token service cannot be reached: {error}"
            ) from None
        if token_answer.status_code in (429, 500, 502, 503, 504):
            raise RegistryUnavailable(
                f"the registry's token service answered {token_answer.status_code}"
            )
        if token_answer.status_code != 200:
            raise RegistryRefused(
                f"the token service refused ({token_answer.status_code}): "
                f"{token_answer.text[:200]}"
            )
        data = token_answer.json()
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryRefused("the token service answered no token")
        self._tokens[scope] = token

    # ------------------------------------------------------------------

    @staticmethod
    def scope(repository, actions="pull,push"):
        return f"repository:{repository}:{actions}"

    def has_blob(self, repository, digest):
        answer = self.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            self.scope(repository),
            ok=(200, 404),
        )
        return answer.status_code == 200

    def mount(self, repository, digest, source):
        """Mount a blob of ``source`` (a repository of this registry):
        True when mounted, False when the registry would rather take an
        upload (which is then cancelled)."""
        answer = self.request(
            "POST",
            f"/v2/{repository}/blobs/uploads/?mount={digest}&from={source}",
            f"{self.scope(repository)} {self.scope(source, 'pull')}",
            ok=(201, 202),
        )
        if answer.status_code == 201:
            return True
        location = answer.headers.get("Location")
        if location:
            self.request("DELETE", location, self.scope(repository), ok=(204, 404, 405))
        return False

    def upload(self, repository, digest, path=None, data=None, reader=None):
        """A blob, from a file (streamed), bytes, or a ``reader()`` giving a
        file-like object with a length, in one PUT. (distribution 2.8 reads
        no body with the POST that starts an upload: a monolithic POST
        would send the bytes twice.)"""
        scope = self.scope(repository)
        started = self.request(
            "POST", f"/v2/{repository}/blobs/uploads/", scope, ok=(202,)
        )
        location = started.headers["Location"]
        separator = "&" if "?" in location else "?"

        def body():
            if reader:
                return reader()
            return open(path, "rb") if path else data  # noqa: SIM115 - requests closes it

        self.request(
            "PUT",
            f"{location}{separator}digest={digest}",
            scope,
            ok=(201,),
            body=body,
            headers={"Content-Type": "application/octet-stream"},
        )

    def push_blob(
        self, repository, digest, path=None, data=None, reader=None, source=None
    ):
        """'present', 'mounted', 'copied' or 'uploaded'. A mount the
        registry declines (a source it will not lend from) is a copy: the
        blob read from ``source`` and uploaded."""
        if source and source != repository:
            # a mount answers 201 for a blob already there too: one call
            if self.mount(repository, digest, source):
                return "mounted"
            if path is None and data is None and reader is None:
                data = self.get_blob(source, digest)
                if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
                    raise RegistryRefused(f"{source} gave other bytes for {digest}")
                self.upload(repository, digest, data=data)
                return "copied"
        elif self.has_blob(repository, digest):
            return "present"
        self.upload(repository, digest, path=path, data=data, reader=reader)
        return "uploaded"

    def put_manifest(self, repository, reference, manifest, media_type=OCI_MANIFEST):
        answer = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            self.scope(repository),
            ok=(201,),
            body=lambda: manifest,
            headers={"Content-Type": media_type},
        )
        digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
        given = answer.headers.get("Docker-Content-Digest")
        if given and given != digest:
            raise RegistryRefused(f"the registry stored {given}, not {digest}")
        return digest

    def get_manifest(self, repository, reference):
        """(bytes, media type, digest)."""
        answer = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            self.scope(repository, "pull"),
            headers={"Accept": ACCEPT},
        )
        body = answer.content
        return (
            body,
            answer.headers.get("Content-Type", ""),
            f"sha256:{hashlib.sha256(body).hexdigest()}",
        )

    def get_blob(self, repository, digest):
        return self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            self.scope(repository, "pull"),
        ).content


def _problem(answer):
    try:
        errors = answer.json().get("errors") or []
    except ValueError:
        errors = []
    if errors:
        return "; ".join(
            f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors
        )
    return (answer.text or answer.reason or "")[:300]
