"""The ``format`` scan: is the artifact what it claims to be, structurally
sound, and safe to open?"""

import json
import math
import os
import struct
from pathlib import Path, PurePosixPath

from .archive import check_archive, unsafe_member_name
from .report import ERROR, INFO, WARN, Finding, ScanReport

SCAN_TYPE = "format"
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MIN_ONNX_OPSET = 7


def check_safetensors(path, location):
    findings = []
    details = {}
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return [
                Finding(ERROR, "truncated", "shorter than a safetensors header")
            ], details
        (header_size,) = struct.unpack("<Q", head)
        if header_size > MAX_SAFETENSORS_HEADER or 8 + header_size > size:
            return [
                Finding(
                    ERROR,
                    "bad_header",
                    f"header length {header_size} does not fit the file",
                )
            ], details
        raw = handle.read(header_size)
    if not raw.lstrip(b" ").startswith(b"{"):
        return [Finding(ERROR, "bad_header", "header is not a JSON object")], details
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        return [
            Finding(ERROR, "bad_header", f"header is not UTF-8 JSON: {error}")
        ], details
    if not isinstance(header, dict):
        return [Finding(ERROR, "bad_header", "header is not a JSON object")], details
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(v, str) for v in metadata.values())
    ):
        findings.append(
            Finding(ERROR, "bad_metadata", "__metadata__ must map text to text")
        )
    data_size = size - 8 - header_size
    spans = []
    for name, tensor in header.items():
        where = f"{location}:{name}"
        if not isinstance(tensor, dict):
            findings.append(
                Finding(ERROR, "bad_tensor", f"{name} is not an object", where)
            )
            continue
        dtype, shape, offsets = (
            tensor.get(k) for k in ("dtype", "shape", "data_offsets")
        )
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
            findings.append(
                Finding(ERROR, "bad_dtype", f"{name}: unknown dtype {dtype!r}", where)
            )
            continue
        if not (
            isinstance(shape, list)
            and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            )
        ):
            findings.append(
                Finding(ERROR, "bad_shape", f"{name}: bad shape {shape!r}", where)
            )
            continue
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            findings.append(
                Finding(
                    ERROR,
                    "bad_offsets",
                    f"{name}: offsets {offsets!r} out of the data",
                    where,
                )
            )
            continue
        expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if offsets[1] - offsets[0] != expected:
            findings.append(
                Finding(
                    ERROR,
                    "size_mismatch",
                    f"{name}: {offsets[1] - offsets[0]} bytes for {dtype}{shape} "
                    f"({expected} expected)",
                    where,
                )
            )
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin != cursor:
            findings.append(
                Finding(
                    ERROR,
                    "overlap" if begin < cursor else "gap",
                    f"{name} starts at {begin}, the previous tensor ends at {cursor}",
                    location,
                )
            )
        cursor = max(cursor, end)
    if not findings and cursor != data_size:
        findings.append(
            Finding(
                ERROR,
                "trailing_data",
                f"{data_size - cursor} bytes follow the last tensor",
            )
        )
    details.update(tensors=len(header), data_bytes=data_size)
    return findings, details


def check_onnx(path, location, min_opset=MIN_ONNX_OPSET):
    import onnx
    from onnx import checker, defs

    findings = []
    details = {}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - any parse failure is the verdict
        return [
            Finding(ERROR, "not_onnx", f"not a readable ONNX model: {error}")
        ], details
    base = Path(path).resolve().parent
    for tensor in _external_tensors(model):
        entries = {entry.key: entry.value for entry in tensor.external_data}
        target = entries.get("location", "")
        why = unsafe_member_name(target) if target else "has no location"
        resolved = (base / target).resolve() if target else None
        if not why and base not in resolved.parents:
            why = "resolves outside the model's folder"
        if not why:
            why = _external_span_problem(resolved, entries)
        if why:
            findings.append(
                Finding(
                    ERROR,
                    "external_data_traversal",
                    f"external data of {tensor.name!r} at {target!r} {why}",
                    location,
                )
            )
    if findings:
        return findings, details
    try:
        checker.check_model(str(path), full_check=False)
    except Exception as error:  # noqa: BLE001 - checker raises several types
        findings.append(
            Finding(
                ERROR,
                "onnx_checker",
                (str(error) or type(error).__name__).splitlines()[0][:300],
            )
        )
    opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    default = opsets.get("ai.onnx")
    if default is not None:
        if default < min_opset:
            findings.append(
                Finding(
                    ERROR, "opset_too_old", f"opset {default} is older than {min_opset}"
                )
            )
        if default > defs.onnx_opset_version():
            findings.append(
                Finding(
                    WARN,
                    "opset_too_new",
                    f"opset {default} is newer than this runtime's "
                    f"{defs.onnx_opset_version()}",
                )
            )
    details.update(
        opsets=opsets,
        ir_version=model.ir_version,
        inputs=[i.name for i in model.graph.input],
        outputs=[o.name for o in model.graph.output],
        signature=onnx_signature(model),
        nodes=len(model.graph.node),
        producer=model.producer_name,
    )
    return findings, details


# ONNX tensor element types as the Open Inference Protocol names them
OIP_DATATYPES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


def onnx_signature(model):
    """The model's own signature, as an upload declares one: ``{"inputs":
    {name: {"datatype", "shape"}}, "outputs": {...}}``, in OIP datatypes, a
    symbolic or unknown dimension as -1; the graph inputs that are
    initializers (older IRs list weights there) are no inputs."""
    weights = {tensor.name for tensor in model.graph.initializer}

    def tensors(values):
        found = {}
        for value in values:
            if value.name in weights or not value.type.HasField("tensor_type"):
                continue
            tensor = value.type.tensor_type
            found[value.name] = {
                "datatype": OIP_DATATYPES.get(tensor.elem_type, "BYTES"),
                "shape": [
                    dim.dim_value if dim.HasField("dim_value") else -1
                    for dim in tensor.shape.dim
                ],
            }
        return found

    return {
        "inputs": tensors(model.graph.input),
        "outputs": tensors(model.graph.output),
    }


def _external_span_problem(resolved, entries):
    """Why the ``offset``/``length`` of external data do not fit its file."""
    if not resolved.is_file():
        return "is not a file next to the model"
    try:
        offset = int(entries.get("offset") or 0)
        length = int(entries.get("length") or 0)
    except ValueError:
        return "has an offset or length that is not a number"
    size = resolved.stat().st_size
    if offset < 0 or length < 0 or offset + length > size:
        return f"asks for bytes {offset}+{length} of a {size}-byte file"
    return None


def _external_tensors(model):
    """Every tensor stored as external data, in the main graph and in every
    subgraph (If, Loop, Scan bodies), sparse initializers included."""
    from onnx import TensorProto

    def graph_tensors(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from graph_tensors(attribute.g)
                for subgraph in attribute.graphs:
                    yield from graph_tensors(subgraph)

    for tensor in graph_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            yield tensor


def check_torchscript(members, location):
    roots = {PurePosixPath(m).parts[0] for m in members if "/" in m}
    findings = []
    if len(roots) != 1:
        findings.append(
            Finding(ERROR, "not_torchscript", "a TorchScript zip has one root folder")
        )
        return findings
    (root,) = roots
    names = set(members)
    for required in ("data.pkl", "version"):
        # PyTorch writes <root>/.data/version from file format 6 on
        if (
            f"{root}/{required}" not in names
            and f"{root}/.data/{required}" not in names
        ):
            findings.append(
                Finding(
                    ERROR, "not_torchscript", f"{root}/{required} is missing", location
                )
            )
    if not any(m.startswith(f"{root}/code/") for m in members):
        findings.append(
            Finding(ERROR, "not_torchscript", f"{root}/code/ is missing", location)
        )
    return findings


def check_savedmodel(members, location):
    names = [m.rstrip("/") for m in members]
    pb = [
        m
        for m in names
        if PurePosixPath(m).name in ("saved_model.pb", "saved_model.pbtxt")
    ]
    if not pb:
        return [Finding(ERROR, "not_savedmodel", "saved_model.pb is missing", location)]
    root = str(PurePosixPath(pb[0]).parent)
    prefix = "" if root == "." else root + "/"
    if not any(m.startswith(f"{prefix}variables/") for m in names):
        return [
            Finding(WARN, "no_variables", "the SavedModel has no variables/ folder")
        ]
    return []


def scan(path, model_format, filename=None, min_opset=MIN_ONNX_OPSET):
    """Check ``path`` against its declared ``model_format``."""
    location = filename or Path(path).name
    findings = []
    details = {"model_format": model_format}
    archive = check_archive(path, location)
    if archive is not None:
        archive_findings, members, kind = archive
        findings += archive_findings
        details.update(archive=kind, members=len(members))
    else:
        members = []
    if model_format == "onnx":
        found, extra = check_onnx(path, location, min_opset)
        findings += found
        details.update(extra)
    elif model_format == "safetensors":
        found, extra = check_safetensors(path, location)
        findings += found
        details.update(extra)
    elif model_format == "pytorch_torchscript":
        if archive is None or archive[2] != "zip":
            findings.append(
                Finding(ERROR, "not_torchscript", "TorchScript models are zips")
            )
        else:
            findings += check_torchscript(members, location)
    elif model_format == "tensorflow_savedmodel":
        if archive is None:
            findings.append(
                Finding(
                    ERROR,
                    "not_savedmodel",
                    "upload a SavedModel as a zip or tar archive",
                )
            )
        else:
            findings += check_savedmodel(members, location)
    elif model_format == "pickle":
        with open(path, "rb") as handle:
            head = handle.read(2)
        if archive is None and not (
            head[:1] == b"\x80" or head[:2] in (b"\x1f\x8b", b"BZ")
        ):
            findings.append(Finding(WARN, "not_pickle", "does not start like a pickle"))
    elif archive is None:
        return ScanReport.skipped(
            SCAN_TYPE,
            f"no structural check exists for {model_format} artifacts",
            details,
        )
    else:
        findings.append(
            Finding(
                INFO, "archive_only", f"{model_format}: only the archive was checked"
            )
        )
    return ScanReport.from_findings(
        SCAN_TYPE, findings, f"valid {model_format} artifact", details
    )
