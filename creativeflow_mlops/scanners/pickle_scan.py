"""Pickle scanning at the opcode level, without unpickling.

The walker (``pickle_walk``) reads each pickle's opcodes with a small
symbolic stack; an import outside the allowlist of ML globals
(``pickle_policy``) fails the artifact. This module finds the pickles in an
artifact: PyTorch ``.pt`` zips (every pickle member), gzip, bz2, xz and
zlib-compressed pickles (joblib's compressors), and pickles concatenated in
one stream, each read as it arrives, in constant memory.
"""

# file-like classes here: read/write are not the ORM's methods
# pylint: disable=method-required-super

import bz2
import gzip
import itertools
import lzma
import zipfile
import zlib
from collections import Counter

from . import archive as archive_checks
from .pickle_walk import READ_SIZE, PickleError, Walker
from .report import ERROR, Finding, ScanReport

SCAN_TYPE = "security_artifact"


def _open_decompressed(stream, head):
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream), "gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream), "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream), "xz"
    if head[:1] == b"\x78" and (head[0] * 256 + head[1]) % 31 == 0:
        return _ZlibStream(stream), "zlib"
    return None, None


class _ZlibStream:
    """A zlib stream (joblib's default compressor) read in chunks."""

    def __init__(self, stream):
        self._stream = stream
        self._inflate = zlib.decompressobj()
        self._pending = b""

    def read(self, size=-1):
        size = READ_SIZE if size is None or size < 0 else size
        while len(self._pending) < size and not self._inflate.eof:
            data = self._inflate.unconsumed_tail or self._stream.read(READ_SIZE)
            if not data:
                break
            self._pending += self._inflate.decompress(data, size * 4)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _scan_stream(stream, location, results):
    """Walk every pickle concatenated in ``stream``; each walker takes over
    the read buffer of the one before, as nested pickles do."""
    walker = None
    for index in itertools.count():
        previous = walker
        walker = Walker(stream, f"{location}#{index}" if index else location)
        if previous is not None:
            walker.buf, walker.pos, walker.offset = (
                previous.buf,
                previous.pos,
                previous.offset,
            )
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
        if walker.pos >= len(walker.buf):
            following = stream.read(1)
            if not following:
                return
            walker.offset += walker.pos
            walker.buf, walker.pos = following, 0


def scan_file(path, display_name=None):
    """Scan a pickle, a compressed pickle or a zip of pickles at ``path``."""
    location = display_name or str(path)
    walkers = []
    details = {}
    refused = []  # members that cannot be read, hence not vouched for
    try:
        with open(path, "rb") as raw:
            head = raw.read(8)
            raw.seek(0)
            is_zip = zipfile.is_zipfile(raw)
            raw.seek(0)
            if is_zip:
                details["container"] = "zip"
                with zipfile.ZipFile(raw) as archive:
                    members = []
                    for info in archive.infolist():
                        where = f"{location}:{info.filename}"
                        if info.is_dir():
                            continue
                        unreadable = archive_checks.unreadable_member(info, where)
                        if unreadable:
                            refused += unreadable
                        elif _looks_like_pickle(archive, info):
                            members.append(info)
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
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as error:
        # a truncated or corrupt container: what could not be read is not vouched for
        refused.append(
            Finding(
                ERROR, "unreadable", f"the artifact cannot be read: {error}", location
            )
        )
    findings = refused + [f for w in walkers for f in w.findings]
    allowed, denied = Counter(), Counter()
    for walker in walkers:
        allowed.update(walker.globals)
        denied.update(walker.refused_globals)
    details.update(
        pickles=len(walkers),
        opcodes=sum(w.opcodes for w in walkers),
        protocols=sorted({w.protocol for w in walkers}),
        globals=dict(allowed.most_common(50)),
        refused_globals=dict(denied.most_common(50)),
    )
    if not walkers and not refused:
        findings.append(Finding(ERROR, "no_pickle", "no pickle found in the artifact"))
    # the summary of a clean scan; a failed one names its findings instead
    return ScanReport.from_findings(
        SCAN_TYPE,
        findings,
        f"{details['opcodes']} opcodes in {len(walkers)} pickle(s), "
        f"{len(allowed)} distinct globals, all in the allowlist",
        details,
    )


def _looks_like_pickle(archive, info):
    if info.filename.endswith((".pkl", ".pickle", ".joblib")):
        return True
    with archive.open(info) as member:
        head = member.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
