"""What every scanner returns."""

from dataclasses import asdict, dataclass, field

PASSED = "passed"
FAILED = "failed"
WARNING = "warning"
SKIPPED = "skipped"

ERROR = "error"
WARN = "warning"
INFO = "info"


@dataclass
class Finding:
    severity: str  # error, warning, info
    code: str
    message: str
    location: str | None = None


@dataclass
class ScanReport:
    scan_type: str
    state: str
    summary: str
    findings: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @classmethod
    def from_findings(cls, scan_type, findings, ok_summary, details=None):
        """``failed`` when a finding is an error, ``warning`` when one is a
        warning, else ``passed``; the summary names the first problems."""
        errors = [f for f in findings if f.severity == ERROR]
        warnings = [f for f in findings if f.severity == WARN]
        if errors:
            state, shown = FAILED, errors
        elif warnings:
            state, shown = WARNING, warnings
        else:
            return cls(scan_type, PASSED, ok_summary, list(findings), details or {})
        summary = "; ".join(f.message for f in shown[:3])
        if len(shown) > 3:
            summary += f" (and {len(shown) - 3} more)"
        return cls(scan_type, state, summary, list(findings), details or {})

    @classmethod
    def skipped(cls, scan_type, reason, details=None):
        return cls(scan_type, SKIPPED, reason, [], details or {})

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        return cls(
            data["scan_type"],
            data["state"],
            data["summary"],
            [Finding(**finding) for finding in data.get("findings", [])],
            data.get("details") or {},
        )
