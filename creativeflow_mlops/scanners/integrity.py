"""Integrity: the stored object is the artifact that was registered.

The bytes are read back from the store (``hash_object`` of a store adapter)
and compared with what the upload recorded or announced. For a direct
multipart upload this is where the SHA-256 is first known: S3 keeps no
whole-object SHA-256 of a multipart object, so completing the upload checks
the size only and this scan, which every other scan waits for, checks the
content. On a re-validation it catches an object changed in the bucket.
"""

import re

from .report import ERROR, Finding, ScanReport

SCAN_TYPE = "integrity"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def verify(size, sha256, expected_size, expected_sha256=None):
    """Compare what the store holds (``size``, ``sha256``) with what was
    registered. ``expected_sha256`` may be unknown (a direct upload that
    announced none): the measured one is then the artifact's."""
    if not _SHA256.fullmatch(sha256 or ""):
        raise ValueError(f"not a SHA-256 digest: {sha256!r}")
    findings = []
    if expected_size is not None and size != expected_size:
        findings.append(
            Finding(
                ERROR,
                "size_mismatch",
                f"the stored object has {size} bytes, {expected_size} were registered",
            )
        )
    if expected_sha256 and sha256 != expected_sha256.lower():
        findings.append(
            Finding(
                ERROR,
                "sha256_mismatch",
                f"the stored object's SHA-256 is {sha256}, {expected_sha256} was "
                "registered",
            )
        )
    return ScanReport.from_findings(
        SCAN_TYPE,
        findings,
        f"{size} bytes, SHA-256 {sha256}"
        + ("" if expected_sha256 else " (recorded: none was announced)"),
        details={
            "size": size,
            "sha256": sha256,
            "expected_size": expected_size,
            "expected_sha256": expected_sha256 or None,
        },
    )
