"""A GitOps repository, through the real ``git`` command: a clone of one
branch kept in a folder of its own, folders replaced and committed, pushed
without ever forcing. Plain Python: no Odoo.

- Credentials never touch the disk or the process list: a token goes in an
  ``http.extraHeader`` passed through git's ``GIT_CONFIG_*`` environment; an
  SSH key in a 0600 file of the clone's folder, through ``GIT_SSH_COMMAND``.
- Every command has a timeout; what went wrong is told apart from git's own
  words: out of reach (``GitUnavailable``, worth trying again), credentials
  refused (``GitAuthFailed``), a push rejected twice or a rebase in conflict
  (``GitRejected``, naming the files).
- A push the remote rejects (someone pushed in between) is fetched, rebased
  and pushed once more; never forced.
- Writing a folder that already holds exactly those files commits nothing
  and returns the commit that holds them: a job run twice pushes once.
- One operation at a time per clone, whichever process or thread asks (a
  lock file, ``flock``), waiting at most the timeout.
"""

import base64
import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

AUTHOR = ("CreativeFlow MLOps", "mlops@creativeflow.invalid")
# git's words for a remote it cannot reach, and for refused credentials
UNREACHABLE = (
    "could not resolve host",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "failed to connect",
    "couldn't connect",
    "the remote end hung up unexpectedly",
    "http 5",
    "returned error: 5",
)
AUTH_REFUSED = (
    "authentication failed",
    "returned error: 401",
    "returned error: 403",
    "permission denied",
    "could not read username",
    "invalid username or password",
)
REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "failed to push")


class GitFailed(Exception):
    """A git operation failed: not worth trying again as it is."""


class GitUnavailable(GitFailed):
    """The remote cannot be reached now: worth trying again."""


class GitAuthFailed(GitFailed):
    """The remote refused the credentials."""


class GitRejected(GitFailed):
    """A push refused even after a rebase, or a rebase in conflict."""


def exclusive(method):
    """``method`` holding the clone's lock."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        if getattr(self._held, "value", False):
            return method(self, *args, **kwargs)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "lock", "w") as handle:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise GitUnavailable(
                            f"the clone stayed busy for {self.timeout} seconds"
                        ) from None
                    time.sleep(0.05)
            self._held.value = True
            try:
                return method(self, *args, **kwargs)
            finally:
                self._held.value = False
                with contextlib.suppress(OSError):
                    fcntl.flock(handle, fcntl.LOCK_UN)

    return locked


@dataclass(frozen=True)
class Commit:
    sha: str
    branch: str
    # False: the branch already held exactly these files
    created: bool = True


def safe_path(path):
    """``path`` as a relative POSIX path inside the repository, or
    ``ValueError`` (no absolute path, no ``..``, no ``.git``)."""
    parts = PurePosixPath(path).parts
    if (
        not parts
        or PurePosixPath(path).is_absolute()
        or any(p in ("..", ".", "") for p in parts)
        or parts[0] == ".git"
    ):
        raise ValueError(f"{path!r} is not a folder inside the repository")
    return str(PurePosixPath(*parts))


class Repository:
    """One remote branch (``branch``) of ``url``, cloned into ``workdir``."""

    def __init__(
        self,
        url,
        branch,
        workdir,
        token=None,
        username="x-access-token",
        ssh_key=None,
        author=AUTHOR,
        timeout=60,
    ):
        self.url = url
        self.branch = branch
        self.workdir = Path(workdir)
        self.token = token
        self.username = username
        self.ssh_key = ssh_key
        self.author = author
        self.timeout = timeout
        self.pushes = 0  # pushes tried, for the logs and the tests
        self._held = threading.local()

    # ------------------------------------------------------------------
    # git itself
    # ------------------------------------------------------------------

    def _environment(self):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": self.author[0],
            "GIT_AUTHOR_EMAIL": self.author[1],
            "GIT_COMMITTER_NAME": self.author[0],
            "GIT_COMMITTER_EMAIL": self.author[1],
        }
        config = [("core.hooksPath", "/dev/null"), ("gc.auto", "0")]
        if self.token:
            pair = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
            config.append(("http.extraHeader", f"Authorization: Basic {pair}"))
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for number, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{number}"] = key
            env[f"GIT_CONFIG_VALUE_{number}"] = value
        if self.ssh_key:
            key_file = self.workdir / "ssh-key"
            if not key_file.exists():
                key_file.write_text(self.ssh_key.strip() + "\n")
                key_file.chmod(0o600)
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o ConnectTimeout={self.timeout} "
                "-o StrictHostKeyChecking=accept-new "
                f"-o UserKnownHostsFile={self.workdir / 'known_hosts'}"
            )
        return env

    def _git(self, *args, cwd=None, check=True):
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd or self._clone,
                env=self._environment(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitUnavailable(
                f"git {args[0]} took more than {self.timeout} seconds"
            ) from None
        if check and done.returncode:
            raise classify(args[0], done.stderr or done.stdout)
        return done

    @property
    def _clone(self):
        return self.workdir / "clone"

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    def check(self):
        """The branch's head on the remote (``git ls-remote``): proves the
        URL and the credentials before any deploy."""
        done = self._git(
            "ls-remote", "--heads", self.url, self.branch, cwd=self.workdir
        )
        line = done.stdout.split()
        if not line:
            raise GitFailed(f"{self.url} has no branch {self.branch}")
        return line[0]

    @exclusive
    def sync(self):
        """The clone at the remote branch's head (cloned the first time,
        fetched after: the history is read once; the remote's address is
        the one given now, should the target's repository have moved)."""
        if not (self._clone / ".git").is_dir():
            shutil.rmtree(self._clone, ignore_errors=True)
            self._git(
                "clone",
                "--quiet",
                "--no-tags",
                "--single-branch",
                "--branch",
                self.branch,
                self.url,
                str(self._clone),
                cwd=self.workdir,
            )
        else:
            self._git("remote", "set-url", "origin", self.url)
            self._fetch(self.branch)
        self._git("checkout", "--quiet", "--force", "-B", self.branch, self._remote())
        self._git("clean", "--quiet", "-fdx")
        return self.head()

    def _remote(self, branch=None):
        return f"refs/remotes/origin/{branch or self.branch}"

    def _fetch(self, branch):
        self._git(
            "fetch",
            "--quiet",
            "--no-tags",
            "origin",
            f"+refs/heads/{branch}:{self._remote(branch)}",
        )

    def head(self, ref="HEAD"):
        return self._git("rev-parse", ref).stdout.strip()

    @exclusive
    def read_text(self, path, ref=None):
        """A file's text at ``ref`` (the remote branch), or None."""
        done = self._git(
            "show", f"{ref or self._remote()}:{safe_path(path)}", check=False
        )
        return done.stdout if done.returncode == 0 else None

    def remote_branch(self, branch):
        """The head of ``branch`` on the remote, or None."""
        done = self._git("ls-remote", "--heads", "origin", branch)
        line = done.stdout.split()
        return line[0] if line else None

    @exclusive
    def log(self, path, limit=20):
        """[(sha, subject)] of the commits that touched ``path``, newest
        first."""
        done = self._git(
            "log", f"-{limit}", "--format=%H %s", self._remote(), "--", safe_path(path)
        )
        return [tuple(line.split(" ", 1)) for line in done.stdout.splitlines()]

    # ------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------

    @exclusive
    def write_folder(self, folder, files, message, branch=None):
        """``folder`` holding exactly ``files`` ({name: text}) on ``branch``
        (default: the repository's branch; another one starts from it and
        is made or updated). An empty ``files`` removes the folder. Returns
        the ``Commit``; ``created`` False when nothing changed."""
        folder = safe_path(folder)
        for name in files:
            safe_path(f"{folder}/{name}")
        branch = branch or self.branch
        self.sync()
        if branch != self.branch:
            self._git("checkout", "--quiet", "-B", branch, self._remote())
        return self._commit_and_push(
            branch, lambda: self._replace(folder, files), message
        )

    @exclusive
    def revert(self, sha, message, branch=None):
        """A commit undoing ``sha`` on ``branch`` (git revert, with
        ``message``); ``GitRejected`` when later commits conflict."""
        branch = branch or self.branch
        self.sync()

        def change():
            parents = self._git("rev-list", "--parents", "-n", "1", sha).stdout.split()
            # a merge commit (a pull request merged): undo it against main
            mainline = ["-m", "1"] if len(parents) > 2 else []
            done = self._git("revert", "--no-commit", *mainline, sha, check=False)
            if done.returncode:
                conflicts = self._conflicts()
                self._git("revert", "--abort", check=False)
                raise GitRejected(
                    f"reverting {sha[:12]} conflicts with later commits"
                    + (f" in {', '.join(conflicts)}" if conflicts else "")
                )

        return self._commit_and_push(branch, change, message)

    @exclusive
    def delete_branch(self, branch):
        """Remove ``branch`` from the remote (a change closed unmerged)."""
        if branch == self.branch:
            raise ValueError("the repository's own branch is never deleted")
        if self.remote_branch(branch):
            self._git("push", "--quiet", "origin", f":refs/heads/{branch}")

    def _replace(self, folder, files):
        target = self._clone / folder
        shutil.rmtree(target, ignore_errors=True)
        for name, text in sorted(files.items()):
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._git("add", "--all", "--", folder)

    def _commit_and_push(self, branch, change, message):
        change()
        if not self._git("diff", "--cached", "--quiet", check=False).returncode:
            # nothing to change: the branch as it is holds it
            if branch != self.branch and self.remote_branch(branch):
                self._fetch(branch)
                return Commit(self.head(self._remote(branch)), branch, created=False)
            return Commit(self.head(), branch, created=False)
        self._git("commit", "--quiet", "--no-verify", "-m", message)
        if branch != self.branch and self.remote_branch(branch):
            # a branch of an earlier try: replaced only by a descendant
            self._fetch(branch)
            if self._same_tree(self._remote(branch), "HEAD"):
                return Commit(self.head(self._remote(branch)), branch, created=False)
        self._push(branch)
        return Commit(self.head(), branch)

    def _same_tree(self, a, b):
        return self.head(f"{a}^{{tree}}") == self.head(f"{b}^{{tree}}")

    def _push(self, branch):
        """Push; rejected (someone pushed in between): fetch, rebase, push
        once more; rejected again or in conflict: ``GitRejected``."""
        self.pushes += 1
        first = self._git(
            "push", "--quiet", "--porcelain", "origin", f"HEAD:refs/heads/{branch}",
            check=False,
        )  # fmt: skip
        if not first.returncode:
            return
        error = classify("push", first.stderr + first.stdout)
        if not isinstance(error, GitRejected):
            raise error
        self._fetch(branch)
        rebased = self._git("rebase", "--quiet", self._remote(branch), check=False)
        if rebased.returncode:
            conflicts = self._conflicts()
            self._git("rebase", "--abort", check=False)
            raise GitRejected(
                f"the push to {branch} was rejected and the rebase on what was "
                "pushed in between conflicts"
                + (f" in {', '.join(conflicts)}" if conflicts else "")
            )
        self.pushes += 1
        second = self._git(
            "push", "--quiet", "--porcelain", "origin", f"HEAD:refs/heads/{branch}",
            check=False,
        )  # fmt: skip
        if second.returncode:
            error = classify("push", second.stderr + second.stdout)
            if isinstance(error, GitRejected):
                raise GitRejected(
                    f"the push to {branch} was rejected twice (fetched and "
                    f"rebased in between): {error}"
                )
            raise error

    def _conflicts(self):
        done = self._git("diff", "--name-only", "--diff-filter=U", check=False)
        return done.stdout.split()


def classify(command, output):
    """git's complaint as the error it is."""
    text = " ".join(output.split())
    lowered = text.lower()
    message = f"git {command}: {text[-600:]}" if text else f"git {command} failed"
    if any(words in lowered for words in AUTH_REFUSED):
        return GitAuthFailed(message)
    if command == "push" and any(words in lowered for words in REJECTED):
        return GitRejected(message)
    if any(words in lowered for words in UNREACHABLE):
        return GitUnavailable(message)
    return GitFailed(message)
