"""The metadata of an upload, field by field: its type, its limits, and
what is refused, with the path of each problem for the 422's ``details``.

Plain checks below the ORM; ``artifacts.parse_metadata`` applies them.
Limits are those a registry would set: names of a few hundred characters,
descriptions of a few hundred KB.
"""

import re
import unicodedata

from ..lifecycle import INTERFACE_TYPES, MODEL_FORMATS, TASK_TYPES

MAX_NAME = 200
MAX_TEXT_BYTES = 256 * 1024
MAX_LINEAGE = 500
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
LINEAGE_KEYS = (
    "source_run",
    "dataset",
    "git_commit",
    "parent_version",
    "feedback_export",
)
SIGNATURE_KEYS = ("inputs", "outputs")
# personal fields: names of inputs, outputs or parameters
MAX_PERSONAL = 100
# (what the form's comma-separated list can hold: no comma, no space around)
PERSONAL_NAME = r"[^,\x00 \t\r\n]([^,\x00]{0,126}[^,\x00 \t\r\n])?"
PERSONAL_SPACES = " \t\r\n"
# a media type (RFC 6838 names): it is sent to the store as a header
CONTENT_TYPE_PATTERN = (
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
# text direction controls: they make a name read otherwise than it sorts
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | set(
    "\u2066\u2067\u2068\u2069"
)


def clean_name(value):
    """A model name in NFC, stripped, or raise ``ValueError`` saying why."""
    if not isinstance(value, str):
        raise ValueError("text")
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ValueError("text, not empty")
    if len(name) > MAX_NAME:
        raise ValueError(f"up to {MAX_NAME} characters")
    if any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in name):
        raise ValueError("no control or text-direction characters")
    return name


def _text(value, limit_bytes):
    if not isinstance(value, str):
        raise ValueError("text")
    if "\x00" in value or len(value.encode("utf-8", "surrogatepass")) > limit_bytes:
        raise ValueError(f"text up to {limit_bytes} bytes (UTF-8), without NUL")
    return value


def _export_named(value):
    """A feedback export, by its id or its URI."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and value:
        return _text(value, MAX_LINEAGE)
    raise ValueError("a feedback export's id, or its URI")


def check(raw):
    """``(clean, problems)``: the metadata with normalized values, and
    {path: what is expected} for every field that is not right."""
    clean, problems = dict(raw), {}

    def expect(path, check_value):
        try:
            return check_value()
        except ValueError as error:
            problems[path] = str(error)
            return None

    clean["model"] = expect("model", lambda: clean_name(raw.get("model")))
    if not (isinstance(raw.get("version"), str) and VERSION.fullmatch(raw["version"])):
        problems["version"] = (
            "letters, digits, . _ + - (up to 64), from a letter or digit"
        )
    if raw.get("model_format") not in dict(MODEL_FORMATS):
        problems["model_format"] = f"one of {', '.join(dict(MODEL_FORMATS))}"
    if raw.get("interface_type", "kserve_v2") not in dict(INTERFACE_TYPES):
        problems["interface_type"] = f"one of {', '.join(dict(INTERFACE_TYPES))}"
    if raw.get("task_type") is not None and raw["task_type"] not in dict(TASK_TYPES):
        problems["task_type"] = f"one of {', '.join(dict(TASK_TYPES))}"
    if raw.get("description") is not None:
        expect("description", lambda: _text(raw["description"], MAX_TEXT_BYTES))
    for name in ("parameters", "metrics", "lineage", "signature"):
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            problems[name] = "a JSON object"
    lineage = raw.get("lineage") if isinstance(raw.get("lineage"), dict) else {}
    for key, value in lineage.items():
        if key not in LINEAGE_KEYS:
            problems[f"lineage.{key}"] = f"unknown; known: {', '.join(LINEAGE_KEYS)}"
        elif key == "feedback_export" and value is not None:
            expect(f"lineage.{key}", lambda v=value: _export_named(v))
        elif value is not None:
            expect(f"lineage.{key}", lambda v=value: _text(v, MAX_LINEAGE))
    problems.update(_signature_problems(raw.get("signature")))
    if raw.get("personal_fields") is not None:
        expect("personal_fields", lambda: _personal(raw["personal_fields"]))
    return clean, problems


def _signature_problems(signature):
    problems = {}
    for key, value in (signature if isinstance(signature, dict) else {}).items():
        if key not in SIGNATURE_KEYS:
            problems[f"signature.{key}"] = "unknown; known: inputs, outputs"
        elif value is not None and not isinstance(value, dict):
            problems[f"signature.{key}"] = "a JSON object of tensors by name"
    return problems


def _personal(names):
    """Names of inputs, outputs or parameters, as the version's
    comma-separated field can hold them."""
    if not (
        isinstance(names, list)
        and len(names) <= MAX_PERSONAL
        and all(isinstance(n, str) and re.fullmatch(PERSONAL_NAME, n) for n in names)
    ):
        raise ValueError(
            f"a list of up to {MAX_PERSONAL} names (1-128 characters, no comma, "
            "no space around)"
        )
    return names
