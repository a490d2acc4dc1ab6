"""The pickle walker: the opcode stream read with a small symbolic stack,
without unpickling.

It knows which module and name every ``GLOBAL``, ``INST`` and
``STACK_GLOBAL`` imports, including names built from memoized strings, and
asks the policy (``pickle_policy``) of each. Large binary payloads (tensor
data) are skipped on the stream, never held in memory, so a multi-GB pickle
walks in constant memory.
"""

import math
import pickletools
import re
from collections import Counter

from .pickle_policy import danger_of, is_allowed
from .report import ERROR, Finding

READ_SIZE = 1 << 20
# a string operand longer than this is not a module or a name: skip it
MAX_NAME = 1024
# small tuples (array shapes) remembered from the memo, at most
MAX_MEMO_TUPLES = 100_000


class PickleError(Exception):
    """The stream is not a well-formed pickle."""


# ---------------------------------------------------------------------------
# The opcode table, built from pickletools once
# ---------------------------------------------------------------------------

_UNKNOWN = None
JOBLIB_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_INDEX_OPS = {
    "PUT",
    "BINPUT",
    "LONG_BINPUT",
    "GET",
    "BINGET",
    "LONG_BINGET",
    "PROTO",
    "BININT1",
    "BININT2",
}
_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "TUPLE": None}
_STRUCTURE_OPS = {
    *_TUPLE_SIZES,
    "EMPTY_DICT",
    "SETITEM",
    "SETITEMS",
    "REDUCE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "BUILD",
}
_DTYPE = re.compile(r"[<>|=]?([biufcmMSUV?])(\d*)\Z")


class _Global(tuple):
    """An imported name on the symbolic stack."""

    def __new__(cls, module, name):
        return super().__new__(cls, (module, name))


class _Dict(dict):
    """A dict built by the pickle, followed while small."""


class _ArrayWrapper:
    """joblib's NumpyArrayWrapper: raw array data follows its BUILD."""


class _DType:
    """``numpy.dtype(<str>)``: enough to size the data of an array."""

    def __init__(self, spec):
        self.hasobject = spec in ("O", "|O", "O8")
        match = _DTYPE.match(spec)
        if self.hasobject:
            self.itemsize = 8
        elif not match:
            raise PickleError(f"unsupported dtype {spec!r}")
        else:
            kind, digits = match.groups()
            if kind in "SUV" and not digits:
                raise PickleError(f"dtype {spec!r} has no size")
            size = int(digits) if digits else 1
            self.itemsize = size * 4 if kind == "U" else size


def _construct(made, args):
    if made.__class__ is _Global:
        if made == ("numpy", "dtype") and args.__class__ is tuple and args:
            if args[0].__class__ is str:
                return _DType(args[0])
        if made == JOBLIB_WRAPPER:
            return _ArrayWrapper()
    return _UNKNOWN


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


class Walker:
    """Walks one pickle from a binary stream."""

    def __init__(self, stream, location):
        self.stream = stream
        self.location = location
        self.buf = b""
        self.pos = 0
        self.offset = 0  # stream offset of buf[0]
        self.opcodes = 0
        self.globals = Counter()  # imports the allowlist admits
        self.refused_globals = Counter()  # and those it refuses
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
            return _UNKNOWN
        if is_allowed(module, name) or (module, name) == JOBLIB_WRAPPER:
            self.globals[f"{module}.{name}"] += 1
        else:
            self.refused_globals[f"{module}.{name}"] += 1
            self.findings.append(
                Finding(ERROR, "unsafe_global", danger_of(module, name), where)
            )
        return _Global(module, name)

    # values the joblib arrays need ---------------------------------------

    def _structure(self, name, stack, marks):
        """Opcodes whose result the scanner follows: tuples, small dicts,
        ``numpy.dtype(...)`` and joblib's ``NumpyArrayWrapper``."""
        if name in _TUPLE_SIZES:
            count = _TUPLE_SIZES[name]
            if count is None:
                if not marks:
                    raise PickleError("TUPLE without a MARK")
                start = marks.pop()
            else:
                start = len(stack) - count
                if start < 0:
                    raise PickleError(f"{name} on a stack too short")
            items = tuple(stack[start:])
            del stack[start:]
            stack.append(items)
        elif name == "EMPTY_DICT":
            stack.append(_Dict())
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                start = len(stack) - 2
            elif marks:
                start = marks.pop()
            else:
                raise PickleError("SETITEMS without a MARK")
            if start < 1:
                raise PickleError(f"{name} on a stack too short")
            target, items = stack[start - 1], stack[start:]
            if target.__class__ is _Dict and len(target) < 64:
                target.update(
                    (items[i], items[i + 1])
                    for i in range(0, len(items) - 1, 2)
                    if items[i].__class__ is str
                )
            del stack[start:]
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
            width = 3 if name == "NEWOBJ_EX" else 2
            if len(stack) < width:
                raise PickleError(f"{name} on a stack too short")
            made, args = stack[-width], stack[-width + 1]
            del stack[-width:]
            stack.append(_construct(made, args))
        elif name == "BUILD":
            if len(stack) < 2:
                raise PickleError("BUILD on a stack too short")
            state = stack.pop()
            if stack[-1].__class__ is _ArrayWrapper:
                self._joblib_array(state)

    def _joblib_array(self, state):
        """Step over the array data joblib writes right after a wrapper:
        raw bytes, or a nested pickle (object arrays) that is scanned."""
        where = f"{self.location}@{self.offset + self.pos}"
        shape = state.get("shape") if state.__class__ is _Dict else None
        dtype = state.get("dtype") if state.__class__ is _Dict else None
        if not (
            isinstance(shape, tuple)
            and all(isinstance(d, int) and d >= 0 for d in shape)
            and dtype.__class__ is _DType
        ):
            self.findings.append(
                Finding(ERROR, "joblib_array", "a joblib array of unknown size", where)
            )
            raise PickleError("cannot step over a joblib array of unknown size")
        if dtype.hasobject:
            nested = Walker(self.stream, f"{where}(objects)")
            nested.buf, nested.pos, nested.offset = self.buf, self.pos, self.offset
            nested.walk()
            self.buf, self.pos, self.offset = nested.buf, nested.pos, nested.offset
            self.opcodes += nested.opcodes
            self.globals.update(nested.globals)
            self.refused_globals.update(nested.refused_globals)
            self.findings += nested.findings
            return
        alignment = state.get("numpy_array_alignment_bytes")
        if isinstance(alignment, int):
            self._skip(self._take(1)[0])
        self._skip(math.prod(shape) * dtype.itemsize)

    def walk(self):  # noqa: C901 - one flat loop: the hot path stays inlined
        table = _TABLE
        stack = []
        marks = []
        memo = {}
        memoized = 0
        memo_tuples = 0
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
                    if name in _INDEX_OPS:
                        value = int.from_bytes(raw, "little")
                    elif name == "BININT":
                        value = int.from_bytes(raw, "little", signed=True)
            elif kind in (_LINE, _LINE2):
                line = self._line()
                if kind == _LINE2:
                    second = self._line()
                    value = self._import(
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
                kind_of = top.__class__
                if (
                    (kind_of is str and _IDENTIFIER(top))
                    or kind_of is _Global
                    or kind_of is _DType
                    or (
                        kind_of is tuple
                        and len(top) <= 8
                        and memo_tuples < MAX_MEMO_TUPLES
                    )
                ):
                    memo[value] = top
                    memo_tuples += kind_of is tuple
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
                stack.append(
                    self._import(
                        module, module_name, f"{self.location}@{self.offset + self.pos}"
                    )
                )
                continue
            if name == "DUP":
                if not stack:
                    raise PickleError("DUP on an empty stack")
                stack.append(stack[-1])
                continue
            if name in _STRUCTURE_OPS:
                self._structure(name, stack, marks)
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
                stack.append(value)


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
