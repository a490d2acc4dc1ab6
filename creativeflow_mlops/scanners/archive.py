"""Archive safety: zip-slip, links, device files and decompression bombs."""

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import PurePosixPath

from .report import ERROR, Finding

MAX_MEMBERS = 100_000
MAX_TOTAL_SIZE = 64 * 1024**3  # uncompressed
MAX_RATIO = 200  # uncompressed / compressed, for members past 1 MiB
RATIO_FLOOR = 1024 * 1024


def unsafe_member_name(name):
    """Why ``name`` would land outside the extraction folder, or None."""
    if "\x00" in name:
        return "contains a NUL byte"
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(normalized).parts:
        return "climbs out of the archive with '..'"
    return None


def _member_findings(name, where, link=False, device=False):
    findings = []
    why = unsafe_member_name(name)
    if why:
        findings.append(Finding(ERROR, "zip_slip", f"{name!r} {why}", where))
    if link:
        findings.append(Finding(ERROR, "symlink", "the archive holds a link", where))
    if device:
        findings.append(Finding(ERROR, "device", "the archive holds a device", where))
    return findings


# the compressions Python's zipfile reads (stored, deflate, bzip2, lzma)
READABLE_COMPRESSIONS = {
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
}


def unreadable_member(info, where):
    """A member no scanner can read: encrypted, or compressed in a way the
    platform does not decode. It cannot be vouched for, so it fails."""
    if info.flag_bits & 0x1:
        return [Finding(ERROR, "encrypted_member", "the member is encrypted", where)]
    if info.compress_type not in READABLE_COMPRESSIONS:
        return [
            Finding(
                ERROR,
                "unsupported_compression",
                f"the member uses compression method {info.compress_type}",
                where,
            )
        ]
    return []


def check_zip(path, location):
    findings = []
    members = []
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            return [Finding(ERROR, "too_many_members", f"{len(infos)} members")], []
        total = 0
        for info in infos:
            where = f"{location}:{info.filename}"
            link = stat.S_ISLNK(info.external_attr >> 16)
            findings += _member_findings(info.filename, where, link=link)
            findings += unreadable_member(info, where)
            total += info.file_size
            ratio = info.file_size // max(info.compress_size, 1)
            if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
                findings.append(
                    Finding(
                        ERROR,
                        "zip_bomb",
                        f"{info.filename} inflates {ratio} times",
                        where,
                    )
                )
            members.append(info.filename)
        if total > MAX_TOTAL_SIZE:
            findings.append(
                Finding(ERROR, "zip_bomb", f"{total} bytes once extracted", location)
            )
    return findings, members


def check_tar(path, location):
    findings = []
    members = []
    total = 0
    packed = max(os.path.getsize(path), 1)
    with tarfile.open(path) as archive:
        for count, info in enumerate(archive):
            if count >= MAX_MEMBERS:
                findings.append(Finding(ERROR, "too_many_members", "too many members"))
                break
            where = f"{location}:{info.name}"
            findings += _member_findings(
                info.name,
                where,
                link=info.issym() or info.islnk(),
                device=info.isdev() or info.isfifo(),
            )
            total += info.size
            members.append(info.name)
            # judged while reading: a compressed bomb is not inflated whole
            ratio = total // packed
            if total > MAX_TOTAL_SIZE or (total > RATIO_FLOOR and ratio > MAX_RATIO):
                findings.append(
                    Finding(
                        ERROR,
                        "zip_bomb",
                        f"{total} bytes once extracted, {ratio} times the archive",
                        location,
                    )
                )
                break
    return findings, members


def check_archive(path, location):
    """(findings, member names, kind) for a zip or tar, or None. An archive
    that cannot be read through is a finding, not an exception."""
    if zipfile.is_zipfile(path):
        try:
            return (*check_zip(path, location), "zip")
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            if _looks_like_other_format(path):
                return None  # a stray end-of-central-directory record
            return (
                [Finding(ERROR, "corrupt_archive", f"unreadable zip: {error}")],
                [],
                "zip",
            )
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError:
        is_tar = False
    if is_tar:
        try:
            return (*check_tar(path, location), "tar")
        except (
            tarfile.TarError,
            OSError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
        ) as error:
            return (
                [Finding(ERROR, "corrupt_archive", f"unreadable tar: {error}")],
                [],
                "tar",
            )
    return None


def _looks_like_other_format(path):
    """A file that does not start like a zip (local header or empty)."""
    with open(path, "rb") as handle:
        return handle.read(4) not in (b"PK\x03\x04", b"PK\x05\x06")
