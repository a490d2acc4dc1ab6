"""The addon's small plain helpers."""

import pytest

from odoo.addons.creativeflow_mlops.utils import parse_json, scrub_paths


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Load model from /srv/x/mlops-scan-1/m.onnx failed",
            "Load model from m.onnx failed",
        ),
        (
            "Not a directory: '/var/lib/odoo/mlops_artifacts/db/k.bin'",
            "Not a directory: 'k.bin'",
        ),
        ("s3://bucket/models/m/1/m.onnx", "s3://bucket/models/m/1/m.onnx"),
        ("http://127.0.0.1:9000/bucket/key", "http://127.0.0.1:9000/bucket/key"),
        ("ratio 1/2, a/b and / alone", "ratio 1/2, a/b and / alone"),
        ("", ""),
    ],
)
def test_messages_never_show_server_paths(text, shown):
    assert scrub_paths(text) == shown


def test_json_nested_too_deep_is_a_value_error():
    assert parse_json('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    assert parse_json("[" * 32 + "]" * 32)
    for deep in ("[" * 33 + "]" * 33, "[" * 10_000 + "]" * 10_000):
        with pytest.raises(ValueError, match="nested deeper than 32"):
            parse_json(deep)
