"""Pickle scanning at the opcode level, without unpickling.

The scanner walks the opcode stream with a small symbolic stack, so that it
knows which module and name every ``GLOBAL``, ``INST`` and ``STACK_GLOBAL``
imports, including names built from memoized strings. An import outside an
allowlist of ML globals fails the artifact. Large binary payloads (tensor
data) are skipped on the stream, never held in memory, so a multi-GB pickle
scans in constant memory.

Containers are opened too: PyTorch ``.pt`` zips (every pickle member), and
gzip, bz2 and xz-compressed pickles (joblib's compressors).
"""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import bz2
import gzip
import lzma
import pickletools
import re
import zipfile
from collections import Counter

from .report import ERROR, Finding, ScanReport

SCAN_TYPE = "security_artifact"
READ_SIZE = 1 << 20
# a string operand longer than this is not a module or a name: skip it
MAX_NAME = 1024

# module -> names allowed (``"*"`` for any name of the module)
ALLOWED_GLOBALS = {
    "collections": {"OrderedDict", "defaultdict", "Counter", "deque"},
    "builtins": {
        "set",
        "frozenset",
        "bytearray",
        "bytes",
        "slice",
        "complex",
        "range",
        "int",
        "float",
        "bool",
        "str",
        "dict",
        "list",
        "tuple",
        "object",
    },
    "__builtin__": {"set", "frozenset", "bytearray", "slice", "complex", "object"},
    "copyreg": {"_reconstructor"},
    "copy_reg": {"_reconstructor"},
    "_codecs": {"encode"},
    "datetime": {"datetime", "date", "time", "timedelta", "timezone"},
    "decimal": {"Decimal"},
    "fractions": {"Fraction"},
    "uuid": {"UUID"},
    "numpy": {
        "ndarray",
        "dtype",
        "bool_",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "str_",
        "bytes_",
        "object_",
    },
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.dtypes": {"*"},
    "numpy.random._pickle": {
        "__randomstate_ctor",
        "__bit_generator_ctor",
        "__generator_ctor",
    },
    "numpy.random.mtrand": {"RandomState"},
    "numpy.random._mt19937": {"MT19937"},
    "torch": {
        "Size",
        "device",
        "dtype",
        "float32",
        "float16",
        "bfloat16",
        "float64",
        "int64",
        "int32",
        "int8",
        "uint8",
        "bool",
        "FloatStorage",
        "HalfStorage",
        "BFloat16Storage",
        "DoubleStorage",
        "LongStorage",
        "IntStorage",
        "ShortStorage",
        "CharStorage",
        "ByteStorage",
        "BoolStorage",
    },
    "torch._utils": {
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_qtensor",
        "_rebuild_sparse_tensor",
    },
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.nn.parameter": {"Parameter"},
    "torch.storage": {"UntypedStorage", "TypedStorage"},
}
# module prefixes whose classes are data (estimators, sparse matrices)
ALLOWED_PREFIXES = ("sklearn.", "scipy.sparse.", "lightgbm.basic.", "xgboost.core.")
# where a finding says more than "not allowed"
KNOWN_DANGEROUS = {
    "os",
    "posix",
    "nt",
    "subprocess",
    "socket",
    "runpy",
    "importlib",
    "sys",
    "shutil",
    "pty",
    "ctypes",
    "marshal",
    "code",
    "webbrowser",
    "pickle",
    "_pickle",
    "types",
    "asyncio",
    "multiprocessing",
}
DANGEROUS_BUILTINS = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "getattr",
    "setattr",
    "open",
    "input",
    "breakpoint",
    "globals",
    "vars",
    "apply",
    "execfile",
}


class PickleError(Exception):
    """The stream is not a well-formed pickle."""


def is_allowed(module, name):
    allowed = ALLOWED_GLOBALS.get(module)
    if allowed is not None and ("*" in allowed or name in allowed):
        return True
    return (
        module.startswith(ALLOWED_PREFIXES)
        and "." not in name
        and not name.startswith("_")
    )


def danger_of(module, name):
    root = module.split(".")[0]
    if root in KNOWN_DANGEROUS:
        return f"{module}.{name} gives code execution or system access"
    if root in ("builtins", "__builtin__") and name in DANGEROUS_BUILTINS:
        return f"{module}.{name} runs or reaches arbitrary code"
    return f"{module}.{name} is not in the allowlist of ML globals"


# ---------------------------------------------------------------------------
# The opcode table, built from pickletools once
# ---------------------------------------------------------------------------

_UNKNOWN = None
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,255}\Z").match

# argument kinds
_FIXED, _LEN1, _LEN4, _LEN4U, _LEN8U, _LINE, _LINE2 = range(7)
_STRING_ARGS = {
    "unicodestring1",
    "unicodestring4",
    "unicodestring8",
    "string1",
    "string4",
    "stringnl",
    "stringnl_noescape",
    "unicodestringnl",
}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}


def _build_table():
    table = {}
    for op in pickletools.opcodes:
        code = op.code.encode("latin-1")[0]
        arg = op.arg
        if arg is None:
            kind, size = _FIXED, 0
        elif arg.name == "stringnl_noescape_pair":
            kind, size = _LINE2, 0
        elif arg.n >= 0:
            kind, size = _FIXED, arg.n
        else:
            kind = {
                pickletools.UP_TO_NEWLINE: _LINE,
                pickletools.TAKEN_FROM_ARGUMENT1: _LEN1,
                pickletools.TAKEN_FROM_ARGUMENT4: _LEN4,
                pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4U,
                pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8U,
            }[arg.n]
            size = 0
        before = op.stack_before
        to_mark = pickletools.markobject in before
        npop = 0 if to_mark else len(before)
        # APPENDS, SETITEMS, ADDITEMS also consume what lies below the mark
        npop_after_mark = before.index(pickletools.markobject) if to_mark else 0
        npush = len(op.stack_after)
        string = bool(arg) and arg.name in _STRING_ARGS
        table[code] = (
            op.name,
            kind,
            size,
            to_mark,
            npop,
            npop_after_mark,
            npush,
            string,
        )
    return table


_TABLE = _build_table()
_MARK_CODE = pickletools.code2op["("].code.encode()[0]


class _Walker:
    """Walks one pickle from a binary stream."""

    def __init__(self, stream, location):
        self.stream = stream
        self.location = location
        self.buf = b""
        self.pos = 0
        self.offset = 0  # stream offset of buf[0]
        self.opcodes = 0
        self.globals = Counter()
        self.findings = []
        self.protocol = 0

    # buffered reading ------------------------------------------------------

    def _fill(self, need):
        """Make ``need`` bytes available at self.pos, or raise at EOF."""
        rest = self.buf[self.pos :]
        chunks = [rest]
        have = len(rest)
        while have < need:
            chunk = self.stream.read(max(READ_SIZE, need - have))
            if not chunk:
                raise PickleError("the pickle is truncated")
            chunks.append(chunk)
            have += len(chunk)
        self.offset += self.pos
        self.buf = b"".join(chunks)
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.buf):
            self._fill(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def _skip(self, n):
        available = len(self.buf) - self.pos
        if n <= available:
            self.pos += n
            return
        n -= available
        self.offset += len(self.buf)
        self.buf, self.pos = b"", 0
        while n > 0:
            chunk = self.stream.read(min(n, READ_SIZE))
            if not chunk:
                raise PickleError("the pickle is truncated")
            n -= len(chunk)
            self.offset += len(chunk)

    def _line(self):
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos : end]
                self.pos = end + 1
                return line
            if len(self.buf) - self.pos > 1 << 20:
                raise PickleError("a text operand is longer than 1 MiB")
            chunk = self.stream.read(READ_SIZE)
            if not chunk:
                raise PickleError("the pickle is truncated")
            self.offset += self.pos
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0

    # the walk ----------------------------------------------------------------

    def _import(self, module, name, where):
        if not isinstance(module, str) or not isinstance(name, str):
            self.findings.append(
                Finding(
                    ERROR,
                    "unresolved_global",
                    "an import whose module or name is computed at load time",
                    where,
                )
            )
            return
        self.globals[f"{module}.{name}"] += 1
        if not is_allowed(module, name):
            self.findings.append(
                Finding(ERROR, "unsafe_global", danger_of(module, name), where)
            )

    def walk(self):  # noqa: C901 - one flat loop: the hot path stays inlined
        table = _TABLE
        stack = []
        marks = []
        memo = {}
        memoized = 0
        take = self._take
        while True:
            if self.pos >= len(self.buf):
                self._fill(1)
            code = self.buf[self.pos]
            self.pos += 1
            self.opcodes += 1
            entry = table.get(code)
            if entry is None:
                raise PickleError(
                    f"unknown opcode 0x{code:02x} at byte {self.offset + self.pos - 1}"
                )
            name, kind, size, to_mark, npop, npop_after, npush, string = entry
            value = _UNKNOWN
            if kind == _FIXED:
                if size:
                    raw = take(size)
                    if name in _MEMO_PUT or name in _MEMO_GET or name == "PROTO":
                        value = int.from_bytes(raw, "little")
            elif kind in (_LINE, _LINE2):
                line = self._line()
                if kind == _LINE2:
                    second = self._line()
                    self._import(
                        line.decode("utf-8", "replace"),
                        second.decode("utf-8", "replace"),
                        f"{self.location}@{self.offset + self.pos}",
                    )
                elif string:
                    value = _decode_text(line, name)
                elif name in _MEMO_PUT or name in _MEMO_GET:
                    try:
                        value = int(line)
                    except ValueError as error:
                        raise PickleError(f"bad memo index {line!r}") from error
            else:
                width = 1 if kind == _LEN1 else 8 if kind == _LEN8U else 4
                length = int.from_bytes(take(width), "little", signed=kind == _LEN4)
                if length < 0:
                    raise PickleError("negative operand length")
                if string and length <= MAX_NAME:
                    raw = take(length)
                    value = raw.decode("utf-8", "replace")
                else:
                    self._skip(length)

            if name == "STOP":
                return
            if name == "PROTO":
                self.protocol = value
                continue
            if name == "FRAME":
                continue
            if code == _MARK_CODE:
                marks.append(len(stack))
                continue
            if name in _MEMO_PUT or name == "MEMOIZE":
                if not stack:
                    raise PickleError("memo store from an empty stack")
                if name == "MEMOIZE":
                    value = memoized
                    memoized += 1
                # only what may name an import is remembered: memory stays
                # flat on pickles of millions of objects
                top = stack[-1]
                if top.__class__ is str and _IDENTIFIER(top):
                    memo[value] = top
                else:
                    memo.pop(value, None)
                continue
            if name in _MEMO_GET:
                stack.append(memo.get(value, _UNKNOWN))
                continue
            if name == "STACK_GLOBAL":
                if len(stack) < 2:
                    raise PickleError("STACK_GLOBAL on a short stack")
                module_name = stack.pop()
                module = stack.pop()
                self._import(
                    module, module_name, f"{self.location}@{self.offset + self.pos}"
                )
                stack.append(_UNKNOWN)
                continue
            if name == "DUP":
                if not stack:
                    raise PickleError("DUP on an empty stack")
                stack.append(stack[-1])
                continue
            if to_mark:
                if not marks:
                    raise PickleError(f"{name} without a MARK")
                del stack[marks.pop() :]
                npop = npop_after
            if npop:
                if len(stack) < npop:
                    raise PickleError(f"{name} on a stack too short")
                del stack[-npop:]
            if npush:
                stack.append(value if string else _UNKNOWN)


def _decode_text(line, name):
    text = line.decode("utf-8", "replace")
    if (
        name in ("STRING",)
        and len(text) >= 2
        and text[0] == text[-1]
        and text[0] in "'\""
    ):
        return text[1:-1]
    return text


def _open_decompressed(stream, head):
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream), "gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream), "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream), "xz"
    return None, None


def _scan_stream(stream, location, results):
    """Walk every pickle concatenated in ``stream``."""
    index = 0
    while True:
        walker = _Walker(stream, f"{location}#{index}" if index else location)
        try:
            walker.walk()
        except PickleError as error:
            walker.findings.append(
                Finding(ERROR, "malformed_pickle", str(error), location)
            )
            results.append(walker)
            return
        results.append(walker)
        # what follows STOP: another pickle, or the end
        rest = walker.buf[walker.pos :]
        tail = rest or stream.read(1)
        if not tail:
            return
        stream = _Prefixed(tail, stream)
        index += 1


class _Prefixed:
    def __init__(self, head, stream):
        self.head = head
        self.stream = stream

    def read(self, size=-1):
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.stream.read(size)


def scan_file(path, display_name=None):
    """Scan a pickle, a compressed pickle or a zip of pickles at ``path``."""
    location = display_name or str(path)
    walkers = []
    details = {}
    with open(path, "rb") as raw:
        head = raw.read(8)
        raw.seek(0)
        is_zip = zipfile.is_zipfile(raw)
        raw.seek(0)
        if is_zip:
            details["container"] = "zip"
            with zipfile.ZipFile(raw) as archive:
                members = [
                    info
                    for info in archive.infolist()
                    if not info.is_dir() and _looks_like_pickle(archive, info)
                ]
                details["pickle_members"] = [info.filename for info in members]
                for info in members:
                    with archive.open(info) as member:
                        _scan_stream(member, f"{location}:{info.filename}", walkers)
        else:
            decompressed, codec = _open_decompressed(raw, head)
            if decompressed is not None:
                details["container"] = codec
                with decompressed:
                    _scan_stream(decompressed, location, walkers)
            else:
                _scan_stream(raw, location, walkers)
    findings = [f for w in walkers for f in w.findings]
    imported = Counter()
    for walker in walkers:
        imported.update(walker.globals)
    details.update(
        pickles=len(walkers),
        opcodes=sum(w.opcodes for w in walkers),
        protocols=sorted({w.protocol for w in walkers}),
        globals=dict(imported.most_common(50)),
    )
    if not walkers:
        findings.append(Finding(ERROR, "no_pickle", "no pickle found in the artifact"))
    return ScanReport.from_findings(
        SCAN_TYPE,
        findings,
        f"{details['opcodes']} opcodes in {len(walkers)} pickle(s), "
        f"{len(imported)} allowed globals",
        details,
    )


def _looks_like_pickle(archive, info):
    if info.filename.endswith((".pkl", ".pickle", ".joblib")):
        return True
    with archive.open(info) as member:
        head = member.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
