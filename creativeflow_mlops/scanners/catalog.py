"""The scan types: one spec each (label, default mode per model format, the
callable that runs it). Plain Python below the models: the validation
service plans a round from ``SPECS`` and runs a scan through ``run``; the
models take their selections and defaults from here.

A scan's callable gets a ``ScanContext``: the artifact as a local file
(``path``, absent for the scans that read the store themselves), what the
version declares, and the settings that concern scanners.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from . import dockerfile, formats, inference, integrity, pickle_scan
from .report import ScanReport

BLOCK = "block"
WARN = "warn"
OFF = "off"
MODES = [(BLOCK, "Blocking"), (WARN, "Warning Only"), (OFF, "Not Run")]

PICKLE_FORMATS = frozenset(
    {"pickle", "pytorch_torchscript", "other", "custom_python_container"}
)
RUNTIME_FORMATS = frozenset({"onnx"})


@dataclass
class ScanContext:
    """What a scan may look at."""

    model_format: str
    filename: str | None = None
    path: str | None = None
    parameters: dict = field(default_factory=dict)
    input_schema: dict | None = None
    output_schema: dict | None = None
    # integrity: () -> (size, sha256) of the stored object, and what the
    # version registered
    measure: Callable | None = None
    expected_size: int | None = None
    expected_sha256: str | None = None
    # settings (services.settings)
    runtime_memory_mb: int = 8192
    benchmark_runs: int = 50
    trivy_path: str | None = None
    content_safety_url: str | None = None


@dataclass(frozen=True)
class ScanSpec:
    code: str
    label: str
    run: Callable[[ScanContext], ScanReport]
    default_mode: Callable[[str], str]
    # False: the scan reads what it needs itself (no local copy is made)
    needs_file: bool = True
    # the formats it can run on; others are skipped with the reason
    formats: frozenset | None = None
    # what "cannot run this format" says
    unsupported: str = ""


def _integrity(ctx):
    size, sha256 = ctx.measure()
    return integrity.verify(size, sha256, ctx.expected_size, ctx.expected_sha256)


def _format(ctx):
    return formats.scan(ctx.path, ctx.model_format, ctx.filename)


def _security_artifact(ctx):
    return pickle_scan.scan_file(ctx.path, ctx.filename)


def _security_container(ctx):
    image = (ctx.parameters or {}).get("image")
    return dockerfile.scan(ctx.path, ctx.filename, image=image, trivy=ctx.trivy_path)


def _functional_io(ctx):
    # the model runs in a child process with a memory cap, not here
    return inference.run_isolated(
        "functional_io",
        ctx.path,
        memory_mb=ctx.runtime_memory_mb,
        input_schema=ctx.input_schema,
        output_schema=ctx.output_schema,
    )


def _performance_benchmark(ctx):
    return inference.run_isolated(
        "benchmark",
        ctx.path,
        memory_mb=ctx.runtime_memory_mb,
        runs=max(2, ctx.benchmark_runs),
        input_schema=ctx.input_schema,
    )


def _content_safety(ctx):
    if not ctx.content_safety_url:
        return ScanReport.skipped(
            "content_safety", "no content-safety checker is configured"
        )
    return ScanReport.skipped(
        "content_safety",
        f"the checker at {ctx.content_safety_url} is not supported yet",
    )


def _always(mode):
    return lambda model_format: mode


def _for(formats_, mode, otherwise=OFF):
    return lambda model_format: mode if model_format in formats_ else otherwise


_RUNTIME_ONLY = "the local runtime runs ONNX models only, not {model_format}"

SPECS = {
    spec.code: spec
    for spec in (
        ScanSpec(
            "integrity", "Integrity", _integrity, _always(BLOCK), needs_file=False
        ),
        ScanSpec("format", "Format", _format, _always(BLOCK)),
        ScanSpec(
            "security_artifact",
            "Artifact Security",
            _security_artifact,
            _for(PICKLE_FORMATS, BLOCK),
        ),
        ScanSpec(
            "security_container",
            "Container Security",
            _security_container,
            _for({"custom_python_container"}, BLOCK),
        ),
        ScanSpec(
            "functional_io",
            "Functional I/O",
            _functional_io,
            _for(RUNTIME_FORMATS, BLOCK),
            formats=RUNTIME_FORMATS,
            unsupported=_RUNTIME_ONLY,
        ),
        ScanSpec(
            "performance_benchmark",
            "Performance Benchmark",
            _performance_benchmark,
            _for(RUNTIME_FORMATS, WARN),
            formats=RUNTIME_FORMATS,
            unsupported=_RUNTIME_ONLY,
        ),
        ScanSpec(
            "content_safety",
            "Content Safety",
            _content_safety,
            _always(WARN),
            needs_file=False,
        ),
    )
}

# the Selection of scan types, in the order a round runs them
SELECTION = [(spec.code, spec.label) for spec in SPECS.values()]
# the scan every other one of a round waits for
FIRST = "integrity"


def default_mode(model_format, scan_type):
    spec = SPECS.get(scan_type)
    return spec.default_mode(model_format) if spec else OFF


def can_run(scan_type, model_format):
    """None, or why ``scan_type`` does not run on this format."""
    spec = SPECS[scan_type]
    if spec.formats is not None and model_format not in spec.formats:
        return spec.unsupported.format(model_format=model_format)
    return None


def run(scan_type, ctx):
    """The scan's report: skipped with the reason on a format it cannot run."""
    reason = can_run(scan_type, ctx.model_format)
    if reason:
        return ScanReport.skipped(scan_type, reason)
    return SPECS[scan_type].run(ctx)
