"""The ``security_container`` scan: rules on the Dockerfile of a custom
serving container, and Trivy on its image when a ``trivy`` binary is
configured."""

import json
import re
import shlex
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import PurePosixPath

from .report import ERROR, WARN, Finding, ScanReport

SCAN_TYPE = "security_container"
MAX_DOCKERFILE = 1024 * 1024
# a secret's name: one of these words as a whole ``_``-separated part
SECRET_WORDS = re.compile(
    r"(^|_)(PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)(_|$)", re.I
)
# names that point at a secret rather than hold one
SECRET_POINTERS = re.compile(r"_(FILE|PATH|DIR)$", re.I)
# names that merely contain a secret word
NOT_SECRETS = re.compile(r"^TOKENIZERS?_", re.I)
SHELL = r"(\S*/)?(sudo(\s+-\S+)*\s+)?(\S*/)?(ba|z|da|k)?sh\b"
PIPE_TO_SHELL = re.compile(r"\b(curl|wget)\b[^|;]*\|\s*" + SHELL)
SUBST_TO_SHELL = re.compile(SHELL + r"\s+-c\s+[\"']?\$\(\s*(curl|wget)\b")


def _logical_lines(text):
    """Dockerfile instructions with continuations joined: (lineno, line).
    Comment lines inside a continuation are dropped, as Docker does, and
    a heredoc body (``RUN <<EOF``) is part of its instruction."""
    current, start = [], None
    heredoc = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if heredoc is not None:
            if line == heredoc:
                yield start, " ".join(current)
                current, start, heredoc = [], None, None
            else:
                current.append(line)
            continue
        if not line or line.startswith("#"):
            continue  # blank lines and comments never end an instruction
        marker = re.search(r"<<-?\s*[\"']?([A-Za-z_]\w*)[\"']?", line)
        if marker and not line.endswith("\\"):
            start = start or number
            current.append(line)
            heredoc = marker.group(1)
            continue
        if start is None:
            start = number
        if line.endswith("\\"):
            current.append(line[:-1])
            continue
        current.append(line)
        yield start, " ".join(current)
        current, start = [], None
    if current:
        yield start, " ".join(current)


def _substitute(word, args):
    """``$NAME`` / ``${NAME}`` / ``${NAME:-default}`` from the ARGs seen."""

    def value(match):
        name, default = match.group(1) or match.group(3), match.group(2)
        return args.get(name) or default or ""

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)", value, word)


def check_dockerfile(text, location="Dockerfile"):
    findings = []
    stages_user = None
    saw_from = False
    stages = set()
    args = {}
    for number, line in _logical_lines(text):
        where = f"{location}:{number}"
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "FROM":
            saw_from = True
            stages_user = None  # each stage starts as root again
            words = [w for w in rest.split() if not w.startswith("--")]
            image = _substitute(words[0], args) if words else ""
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if image.lower() in stages:
                continue  # an earlier stage of this Dockerfile
            if image.lower() != "scratch" and "@sha256:" not in image:
                name = image.rsplit("/", 1)[-1]
                if ":" not in name or name.endswith(":latest"):
                    findings.append(
                        Finding(
                            ERROR,
                            "unpinned_base",
                            f"base image {image} has no fixed tag or digest",
                            where,
                        )
                    )
        elif instruction == "USER":
            stages_user = rest.split(":")[0]
        elif instruction == "RUN" and (
            PIPE_TO_SHELL.search(rest) or SUBST_TO_SHELL.search(rest)
        ):
            findings.append(
                Finding(
                    ERROR, "curl_pipe_shell", "a download is piped into a shell", where
                )
            )
        elif instruction in ("ENV", "ARG"):
            for name, value in _assignments(rest):
                if instruction == "ARG":
                    args[name] = value
                if (
                    SECRET_WORDS.search(name)
                    and not SECRET_POINTERS.search(name)
                    and not NOT_SECRETS.search(name)
                    and value
                ):
                    findings.append(
                        Finding(
                            ERROR,
                            "secret_in_image",
                            f"{instruction} {name} puts a secret in the image",
                            where,
                        )
                    )
        elif (
            instruction == "ADD"
            and re.search(r"\bhttps?://", rest)
            and "--checksum=" not in rest
        ):
            findings.append(
                Finding(
                    ERROR, "add_from_url", "ADD fetches from a URL unverified", where
                )
            )
    if not saw_from:
        findings.append(Finding(ERROR, "no_from", "no FROM instruction", location))
    elif stages_user in (None, "root", "0"):
        findings.append(
            Finding(
                ERROR,
                "runs_as_root",
                "the final stage runs as root: add a USER",
                location,
            )
        )
    return findings


def _assignments(rest):
    try:
        words = shlex.split(rest)
    except ValueError:
        words = rest.split()
    if len(words) >= 1 and "=" not in words[0]:
        # legacy "ENV NAME value" and bare "ARG NAME"
        return [(words[0], " ".join(words[1:]))]
    return [tuple(word.split("=", 1)) for word in words if "=" in word]


def _is_dockerfile_name(name):
    return (
        name == "Dockerfile"
        or name.startswith("Dockerfile.")
        or name.endswith((".Dockerfile", ".dockerfile"))
    )


def find_dockerfile(path, filename=None):
    """The Dockerfile text in an artifact (itself, or inside a zip/tar)."""
    name = PurePosixPath(filename or str(path)).name
    if _is_dockerfile_name(name):
        with open(path, "rb") as handle:
            return handle.read(MAX_DOCKERFILE).decode("utf-8", "replace"), name
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if _is_dockerfile_name(PurePosixPath(info.filename).name) and (
                    not info.is_dir()
                ):
                    with archive.open(info) as member:
                        data = member.read(MAX_DOCKERFILE)
                    return data.decode("utf-8", "replace"), info.filename
        return None, None
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError:
        is_tar = False
    if is_tar:
        with tarfile.open(path) as archive:
            for info in archive:
                if _is_dockerfile_name(PurePosixPath(info.name).name) and info.isfile():
                    data = archive.extractfile(info).read(MAX_DOCKERFILE)
                    return data.decode("utf-8", "replace"), info.name
    return None, None


def trivy_image(trivy, image, timeout=600):
    """Findings of ``trivy image`` (HIGH and CRITICAL)."""
    try:
        result = subprocess.run(
            [
                trivy,
                "image",
                "--quiet",
                "--format",
                "json",
                "--severity",
                "HIGH,CRITICAL",
                image,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [Finding(WARN, "trivy_failed", f"trivy took over {timeout} s")]
    except OSError as error:
        return [Finding(WARN, "trivy_failed", f"trivy cannot run: {error}")]
    if result.returncode != 0:
        return [
            Finding(WARN, "trivy_failed", result.stderr.strip()[:300] or "trivy failed")
        ]
    try:
        report = json.loads(result.stdout or "{}")
    except ValueError:
        return [Finding(WARN, "trivy_failed", "trivy's output is not JSON")]
    findings = []
    for target in report.get("Results", []):
        for vuln in target.get("Vulnerabilities") or []:
            findings.append(
                Finding(
                    ERROR if vuln.get("Severity") == "CRITICAL" else WARN,
                    "vulnerability",
                    f"{vuln.get('VulnerabilityID')} in {vuln.get('PkgName')}",
                    target.get("Target"),
                )
            )
    return findings


def scan(path, filename=None, image=None, trivy=None):
    findings = []
    try:
        text, where = find_dockerfile(path, filename)
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        OSError,
        EOFError,
        RuntimeError,  # an encrypted zip member
        NotImplementedError,  # a compression zipfile cannot read
        zlib.error,
    ) as error:
        return ScanReport(
            SCAN_TYPE,
            "failed",
            f"the artifact cannot be read for a Dockerfile: {error}",
        )
    details = {}
    if text is not None:
        findings += check_dockerfile(text, where)
        details["dockerfile"] = where
    if image and trivy:
        findings += trivy_image(trivy, image)
        details["image"] = image
    if text is None and not (image and trivy):
        reason = "no Dockerfile in the artifact"
        if image:
            reason += "; image scanning needs a trivy binary (Settings → MLOps)"
        return ScanReport.skipped(SCAN_TYPE, reason, details)
    if image and not trivy:
        details["image_scan"] = "skipped: no trivy binary configured"
    return ScanReport.from_findings(
        SCAN_TYPE, findings, "container rules passed", details
    )
