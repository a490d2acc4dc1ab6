"""How POST /models/upload decides to stream the file into the store: the
metadata part must come first and fit in the first 64 KiB."""

import io

from odoo.addons.creativeflow_mlops.controllers.multipart import (
    _leading_metadata,
    _Prefixed,
)

BOUNDARY = b"b0undary"


def _part(name, value, filename=None):
    disposition = f'form-data; name="{name}"' + (
        f'; filename="{filename}"' if filename else ""
    )
    return (
        b"--"
        + BOUNDARY
        + b"\r\nContent-Disposition: "
        + disposition.encode()
        + b"\r\n\r\n"
        + value
        + b"\r\n"
    )


def test_metadata_first_is_found():
    body = _part("metadata", b'{"model": "m"}') + _part("file", b"\x00" * 10, "m.onnx")
    assert _leading_metadata(body, BOUNDARY) == '{"model": "m"}'


def test_file_first_or_cut_metadata_is_not_streamed():
    file_first = _part("file", b"data", "m.onnx") + _part("metadata", b"{}")
    assert _leading_metadata(file_first, BOUNDARY) is None
    cut = _part("metadata", b'{"model": "' + b"x" * 100)[:60]
    assert _leading_metadata(cut, BOUNDARY) is None
    assert _leading_metadata(b"garbage", BOUNDARY) is None
    # a file part named metadata is a file, not the metadata
    assert _leading_metadata(_part("metadata", b"{}", "x.json"), BOUNDARY) is None


def test_prefixed_stream_gives_back_what_was_peeked():
    stream = _Prefixed(b"head\nline\n", io.BytesIO(b"rest\nof it"))
    assert stream.readline() == b"head\n"
    assert stream.read(3) == b"lin"
    assert stream.readline() == b"e\n"
    assert stream.read() == b"rest\nof it"
