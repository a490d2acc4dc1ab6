"""Format, container and runtime scanners on artifacts the tests make."""

import io
import json
import os
import struct
import sys
import tarfile
import time
import zipfile

import numpy as np
import onnx
import pickle_corpus
import pytest

from odoo.addons.creativeflow_mlops.scanners import dockerfile, formats, inference
from odoo.addons.creativeflow_mlops.tests.artifacts import onnx_model


def make_onnx(path, opset=17, external=None):
    onnx.save(onnx_model(opset, external), str(path))
    return path


def make_safetensors(path, tensors, tamper=None):
    header, data, offset = {}, b"", 0
    for name, array in tensors.items():
        raw = array.tobytes()
        dtype = {"float32": "F32", "int64": "I64", "float16": "F16"}[str(array.dtype)]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        data += raw
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    if tamper:
        tamper(header)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------


def test_onnx_valid_model_passes_every_check(tmp_path):
    path = make_onnx(tmp_path / "model.onnx")
    report = formats.scan(path, "onnx")
    assert report.state == "passed", report.summary
    assert report.details["opsets"] == {"ai.onnx": 17}
    io_report = inference.functional_io(path, output_schema={"y": {"dtype": "float32"}})
    assert io_report.state == "passed", io_report.summary
    assert io_report.details["outputs"] == [
        {"name": "y", "shape": [1, 2], "dtype": "float32"}
    ]
    bench = inference.benchmark(path, runs=20, warmup=2)
    assert bench.state == "passed"
    assert 0 < bench.details["latency_p50_ms"] <= bench.details["latency_p99_ms"]
    assert bench.details["throughput_per_s"] > 0


@pytest.mark.parametrize(
    "location", ["../../etc/passwd", "/etc/passwd", "sub/../../x.bin"]
)
def test_onnx_external_data_must_stay_inside(tmp_path, location):
    path = make_onnx(tmp_path / "model.onnx", external=location)
    report = formats.scan(path, "onnx")
    assert report.state == "failed"
    assert report.findings[0].code == "external_data_traversal"


def test_onnx_external_data_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "weights.bin").write_bytes(np.ones((4, 2), dtype=np.float32).tobytes())
    path = make_onnx(tmp_path / "model.onnx", external="weights.bin")
    assert formats.scan(path, "onnx").state == "passed"


def test_onnx_refusals(tmp_path):
    old = make_onnx(tmp_path / "old.onnx", opset=6)
    assert "opset 6 is older" in formats.scan(old, "onnx").summary
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(256))
    assert formats.scan(junk, "onnx").state == "failed"
    wrong = inference.functional_io(
        make_onnx(tmp_path / "m.onnx"),
        output_schema={"y": {"dtype": "int64", "shape": [1, 3]}},
    )
    assert wrong.state == "failed"
    assert {f.code for f in wrong.findings} == {"output_dtype", "output_shape"}
    assert inference.functional_io(junk).state == "failed"


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


def _tensors():
    return {
        "a": np.zeros((2, 3), dtype=np.float32),
        "b": np.arange(4, dtype=np.int64),
        "c": np.ones((5,), dtype=np.float16),
    }


def test_safetensors_valid(tmp_path):
    report = formats.scan(
        make_safetensors(tmp_path / "w.safetensors", _tensors()), "safetensors"
    )
    assert report.state == "passed", report.summary
    assert report.details["tensors"] == 3


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda h: h["a"].update(shape=[2, 4]), "size_mismatch"),
        (lambda h: h["b"].update(data_offsets=[24, 40]), "size_mismatch"),
        (lambda h: h["b"].update(data_offsets=[20, 52]), "overlap"),
        (lambda h: h["c"].update(data_offsets=[56, 10**9]), "bad_offsets"),
        (lambda h: h["a"].update(dtype="F128"), "bad_dtype"),
        (lambda h: h["a"].update(shape=[-2, 3]), "bad_shape"),
        (lambda h: h.update(__metadata__={"x": 1}), "bad_metadata"),
    ],
)
def test_safetensors_inconsistencies(tmp_path, tamper, code):
    path = make_safetensors(tmp_path / "w.safetensors", _tensors(), tamper)
    report = formats.scan(path, "safetensors")
    assert report.state == "failed"
    assert code in {f.code for f in report.findings}


def test_safetensors_bad_header(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    assert formats.scan(path, "safetensors").findings[0].code == "bad_header"
    path.write_bytes(struct.pack("<Q", 4) + b"[1]x")
    assert formats.scan(path, "safetensors").state == "failed"
    path.write_bytes(b"\x01")
    assert formats.scan(path, "safetensors").findings[0].code == "truncated"


# ---------------------------------------------------------------------------
# Archives, TorchScript, SavedModel
# ---------------------------------------------------------------------------


def _zip(path, members, symlink=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            archive.writestr(info, "/etc/passwd")
    return path


def test_torchscript_structure(tmp_path):
    good = _zip(
        tmp_path / "m.pt",
        {
            "m/data.pkl": b"\x80\x02}q\x00.",
            "m/version": "3",
            "m/code/__torch__/m.py": "x",
        },
    )
    assert formats.scan(good, "pytorch_torchscript").state == "passed"
    bad = _zip(tmp_path / "b.pt", {"m/data.pkl": b"\x80\x02}.", "m/version": "3"})
    assert "code/ is missing" in formats.scan(bad, "pytorch_torchscript").summary
    plain = tmp_path / "p.pt"
    plain.write_bytes(b"\x80\x02}.")
    assert formats.scan(plain, "pytorch_torchscript").state == "failed"


@pytest.mark.parametrize(
    ("members", "symlink", "code"),
    [
        ({"m/../../evil.py": "x", "m/data.pkl": "", "m/version": ""}, None, "zip_slip"),
        ({"/abs/evil.py": "x"}, None, "zip_slip"),
        ({"m\\..\\..\\evil.py": "x"}, None, "zip_slip"),
        ({"m/data.pkl": "", "m/version": ""}, "m/code/link", "symlink"),
        ({"m/bomb.bin": b"\0" * (64 * 1024 * 1024)}, None, "zip_bomb"),
    ],
)
def test_zip_attacks(tmp_path, members, symlink, code):
    path = _zip(tmp_path / "a.pt", members, symlink)
    report = formats.scan(path, "pytorch_torchscript")
    assert report.state == "failed"
    assert code in {f.code for f in report.findings}


def test_tar_attacks_and_savedmodel(tmp_path):
    good = tmp_path / "saved.tar"
    with tarfile.open(good, "w") as archive:
        for name in ("sm/saved_model.pb", "sm/variables/variables.index"):
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    assert formats.scan(good, "tensorflow_savedmodel").state == "passed"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        link = tarfile.TarInfo("sm/variables")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc"
        archive.addfile(link)
        info = tarfile.TarInfo("../saved_model.pb")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    codes = {f.code for f in formats.scan(evil, "tensorflow_savedmodel").findings}
    assert {"symlink", "zip_slip"} <= codes


def test_formats_without_a_check_are_skipped(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"opaque")
    report = formats.scan(path, "other")
    assert report.state == "skipped"
    assert "no structural check" in report.summary


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------

GOOD_DOCKERFILE = """\
FROM python:3.11-slim@sha256:{digest} AS build
RUN pip install --no-cache-dir onnxruntime==1.20.0
FROM python:3.11.9-slim
COPY --from=build /usr/local /usr/local
ARG MODEL_NAME
ENV LOG_LEVEL=info
USER 1000:1000
CMD ["python", "-m", "server"]
""".format(digest="a" * 64)


def test_dockerfile_good_one_passes(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD_DOCKERFILE)
    report = dockerfile.scan(path)
    assert report.state == "passed", report.summary


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("FROM python:3.11\nCMD x\n", "runs_as_root"),
        ("FROM python\nUSER app\n", "unpinned_base"),
        ("FROM python:latest\nUSER app\n", "unpinned_base"),
        (
            "FROM python:3.11\nRUN curl -fsSL https://x.sh \\\n  | bash\nUSER app\n",
            "curl_pipe_shell",
        ),
        ("FROM python:3.11\nENV API_KEY=abc123\nUSER app\n", "secret_in_image"),
        ("FROM python:3.11\nARG DB_PASSWORD=hunter2\nUSER app\n", "secret_in_image"),
        ("FROM python:3.11\nADD https://x/model.onnx /m\nUSER app\n", "add_from_url"),
        ("FROM python:3.11\nUSER app\nFROM python:3.11\nCMD x\n", "runs_as_root"),
        ("FROM python:3.11\nUSER root\n", "runs_as_root"),
    ],
)
def test_dockerfile_rules(text, code):
    assert code in {f.code for f in dockerfile.check_dockerfile(text)}


def test_dockerfile_inside_an_archive_and_absent(tmp_path):
    archive = _zip(
        tmp_path / "server.zip", {"srv/Dockerfile": "FROM python\n", "srv/app.py": ""}
    )
    report = dockerfile.scan(archive)
    assert report.state == "failed"
    assert report.details["dockerfile"] == "srv/Dockerfile"
    plain = tmp_path / "model.onnx"
    plain.write_bytes(b"x")
    skipped = dockerfile.scan(plain, image="registry/x:1")
    assert skipped.state == "skipped"
    assert "trivy" in skipped.summary


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (pickle_corpus.zip_member_flagged_encrypted, "encrypted_member"),
        (lambda: pickle_corpus.zip_member_with_method(99), "unsupported_compression"),
    ],
)
def test_unreadable_zip_members_fail_the_format_scan(tmp_path, build, code):
    path = tmp_path / "m.pt"
    path.write_bytes(build())
    report = formats.scan(path, "pytorch_torchscript")
    assert report.state == "failed"
    assert code in {f.code for f in report.findings}


FAKE_TRIVY = """#!{python}
import json, os, sys, time
with open({record!r}, "w") as handle:
    json.dump(sys.argv[1:], handle)
mode = os.environ.get("FAKE_TRIVY", "report")
if mode == "fail":
    sys.stderr.write("unable to pull the image")
    sys.exit(1)
if mode == "slow":
    time.sleep(30)
if mode == "garbage":
    print("not json")
    sys.exit(0)
vulns = [("CVE-2024-0001", "openssl", "CRITICAL"), ("CVE-2024-0002", "zlib", "HIGH")]
print(json.dumps({{"Results": [{{"Target": "registry.local/m:1 (debian 12)",
    "Vulnerabilities": [
        {{"VulnerabilityID": v, "PkgName": p, "Severity": s}} for v, p, s in vulns
    ]}}]}}))
"""


def test_trivy_is_called_and_read(tmp_path, monkeypatch):
    """Trivy cannot run here (no images, no network): a stand-in binary checks
    how it is called and how its JSON report is read."""
    record = tmp_path / "args.json"
    trivy = tmp_path / "trivy"
    trivy.write_text(FAKE_TRIVY.format(python=sys.executable, record=str(record)))
    trivy.chmod(0o755)
    recipe = tmp_path / "Dockerfile"
    recipe.write_text("FROM python:3.11.9-slim\nUSER app\n")
    report = dockerfile.scan(
        recipe, "Dockerfile", image="registry.local/m:1", trivy=str(trivy)
    )
    assert json.loads(record.read_text()) == [
        "image",
        "--quiet",
        "--format",
        "json",
        "--severity",
        "HIGH,CRITICAL",
        "registry.local/m:1",
    ]
    assert report.state == "failed"
    assert {f.message for f in report.findings} >= {
        "CVE-2024-0001 in openssl",
        "CVE-2024-0002 in zlib",
    }
    for mode, text in (
        ("fail", "unable to pull"),
        ("garbage", "not JSON"),
    ):
        monkeypatch.setenv("FAKE_TRIVY", mode)
        (found,) = dockerfile.trivy_image(str(trivy), "registry.local/m:1")
        assert found.code == "trivy_failed" and text in found.message
    monkeypatch.setenv("FAKE_TRIVY", "slow")
    (found,) = dockerfile.trivy_image(str(trivy), "x", timeout=1)
    assert "over 1 s" in found.message
    (found,) = dockerfile.trivy_image(str(tmp_path / "missing"), "x")
    assert "cannot run" in found.message


def _identity_onnx(path, elem_type, shape):
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "identity",
        [onnx.helper.make_tensor_value_info("x", elem_type, shape)],
        [onnx.helper.make_tensor_value_info("y", elem_type, shape)],
    )
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    "elem_type",
    [
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.BOOL,
        onnx.TensorProto.STRING,
        onnx.TensorProto.INT64,
        onnx.TensorProto.FLOAT16,
    ],
)
def test_functional_io_generates_every_input_type(tmp_path, elem_type):
    path = _identity_onnx(tmp_path / "m.onnx", elem_type, ["n", 3])
    report = inference.functional_io(path)
    assert report.state == "passed", report.summary
    assert report.details["inputs"]["x"]["shape"] == [1, 3]


def test_runtime_limits_and_odd_signatures(tmp_path):
    # inputs too large for this machine: not run, and said so
    huge = _identity_onnx(
        tmp_path / "huge.onnx", onnx.TensorProto.FLOAT, [1, 3, 30000, 30000]
    )
    for report in (inference.functional_io(huge), inference.benchmark(huge, runs=2)):
        assert report.state == "skipped"
        assert "MiB" in report.summary
    small = _identity_onnx(tmp_path / "small.onnx", onnx.TensorProto.FLOAT, [2, 3])
    # malformed signatures are reported, never a crash
    for schema in ({"y": {"shape": 2}}, [{"shape": [2, 3]}, {"name": "z"}]):
        report = inference.functional_io(small, output_schema=schema)
        assert report.state in ("passed", "failed")
    assert (
        inference.functional_io(small, input_schema={"x": {"shape": 5}}).state
        == "failed"
    )
    # one run still gives percentiles
    assert inference.benchmark(small, runs=1, warmup=0).state == "passed"
    # without a declared signature, outputs are checked against the model's own
    report = inference.functional_io(small)
    assert report.details["outputs"] == [
        {"name": "y", "shape": [2, 3], "dtype": "float32"}
    ]


def test_runtime_stops_a_run_that_takes_too_long(tmp_path):
    # a Loop of 10**12 iterations: onnxruntime is told to stop after 1 s
    helper, proto = onnx.helper, onnx.TensorProto
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["c"], ["c_out"]),
            helper.make_node("Identity", ["v"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", proto.INT64, []),
            helper.make_tensor_value_info("c", proto.BOOL, []),
            helper.make_tensor_value_info("v", proto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("c_out", proto.BOOL, []),
            helper.make_tensor_value_info("v_out", proto.FLOAT, [1]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "cond", "x"], ["y"], body=body)],
        "spin",
        [helper.make_tensor_value_info("x", proto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", proto.FLOAT, [1])],
        [
            helper.make_tensor("n", proto.INT64, [], [10**12]),
            helper.make_tensor("cond", proto.BOOL, [], [True]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "spin.onnx"
    onnx.save(model, path)
    started = time.monotonic()
    report = inference.functional_io(path, timeout=1)
    assert time.monotonic() - started < 30
    assert report.state == "failed"
    assert "terminat" in report.summary.lower(), report.summary


def test_onnx_external_data_links_spans_and_subgraphs(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 32)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(outside)
    linked = make_onnx(folder / "linked.onnx", external="weights.bin")
    assert formats.scan(linked, "onnx").findings[0].code == "external_data_traversal"
    # offset + length beyond the file
    (folder / "short.bin").write_bytes(b"\0" * 8)
    short = make_onnx(folder / "short.onnx", external="short.bin")
    model = onnx.load(short, load_external_data=False)
    entry = model.graph.initializer[0].external_data.add()
    entry.key, entry.value = "length", "32"
    onnx.save(model, short)
    report = formats.scan(short, "onnx")
    assert report.findings[0].code == "external_data_traversal"
    assert "8-byte file" in report.summary
    # a traversal hidden in an If branch
    inner = onnx_model(external="../../etc/passwd").graph
    branch = onnx.helper.make_graph(
        list(inner.node), "then", [], list(inner.output), list(inner.initializer)
    )
    outer = onnx.helper.make_graph(
        [
            onnx.helper.make_node(
                "If", ["c"], ["y"], then_branch=branch, else_branch=branch
            )
        ],
        "outer",
        [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    nested = tmp_path / "nested.onnx"
    onnx.save(
        onnx.helper.make_model(outer, opset_imports=[onnx.helper.make_opsetid("", 17)]),
        nested,
    )
    assert formats.scan(nested, "onnx").findings[0].code == "external_data_traversal"


def test_safetensors_headers_that_are_not_plain_json(tmp_path):
    path = tmp_path / "w.safetensors"
    for header in (
        b'{"a": {"dtype": [], "shape": [1], "data_offsets": [0, 4]}}',
        b"[" * 100_000,
        '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'.encode(
            "utf-16"
        ),
    ):
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
        report = formats.scan(path, "safetensors")
        assert report.state == "failed", header[:20]
    # a stray end-of-central-directory record does not make it a zip
    good = make_safetensors(tmp_path / "g.safetensors", _tensors())
    with open(good, "ab") as handle:
        handle.write(b"PK\x05\x06" + b"\0" * 18)
    assert {f.code for f in formats.scan(good, "safetensors").findings} == {
        "trailing_data"
    }


def test_compressed_tar_bombs_and_broken_tars(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as archive:
        info = tarfile.TarInfo("sm/variables/zeros.bin")
        info.size = 256 * 1024 * 1024
        archive.addfile(info, io.BytesIO(b"\0" * info.size))
    report = formats.scan(bomb, "tensorflow_savedmodel")
    assert "zip_bomb" in {f.code for f in report.findings}
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bomb.read_bytes()[: bomb.stat().st_size // 2])
    report = formats.scan(broken, "tensorflow_savedmodel")
    assert report.state == "failed"


def test_torchscript_from_newer_pytorch(tmp_path):
    path = _zip(
        tmp_path / "m.pt",
        {
            "m/data.pkl": b"\x80\x02}.",
            "m/.data/version": "6",
            "m/code/__torch__/m.py": "x",
        },
    )
    assert formats.scan(path, "pytorch_torchscript").state == "passed"


BASE = "FROM python:3.11.9-slim\n"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (
            BASE + "RUN curl -fsSL https://x/i.sh | /bin/sh\nUSER app",
            "curl_pipe_shell",
        ),
        (
            "FROM python:3.11.9-slim\nRUN curl 'https://x?a=1&b=2' | sh\nUSER app",
            "curl_pipe_shell",
        ),
        (
            BASE + 'RUN sh -c "$(curl -fsSL https://x/i.sh)"\nUSER app',
            "curl_pipe_shell",
        ),
        (
            BASE
            + "RUN apt-get update && \\\n# a comment\n"
            + "    wget -qO- https://x | sudo -E bash\nUSER app",
            "curl_pipe_shell",
        ),
        (
            BASE + "RUN <<EOF\nset -e\ncurl https://x | sh\nEOF\nUSER app",
            "curl_pipe_shell",
        ),
        (
            "FROM python:3.11.9-slim\nCOPY <<EOF /etc/motd\nUSER app\nEOF",
            "runs_as_root",
        ),
        ("ARG TAG=latest\nFROM python:$TAG\nUSER app", "unpinned_base"),
        ("FROM python:3.11.9-slim\nENV HF_TOKEN=hf_abc\nUSER app", "secret_in_image"),
        (
            "FROM python:3.11.9-slim\nENV DB_PASSWORD secret\nUSER app",
            "secret_in_image",
        ),
    ],
)
def test_dockerfile_rules_see_through_shell_forms(text, code):
    assert code in {f.code for f in dockerfile.check_dockerfile(text)}


def test_dockerfile_rules_leave_ordinary_containers_alone():
    text = "\n".join(
        [
            "ARG PY=3.11.9",
            "FROM --platform=linux/amd64 python:${PY}-slim AS base",
            "ENV TOKENIZERS_PARALLELISM=false DB_PASSWORD_FILE=/run/secrets/db",
            "ADD --checksum=sha256:" + "a" * 64 + " https://x/model.bin /m/",
            "FROM base",
            "USER app",
        ]
    )
    assert dockerfile.check_dockerfile(text) == []


def test_dockerfile_names_and_unreadable_archives(tmp_path):
    gpu = tmp_path / "Dockerfile.gpu"
    gpu.write_text("FROM python:latest\n")
    assert "unpinned_base" in {
        f.code for f in dockerfile.scan(gpu, "Dockerfile.gpu").findings
    }
    encrypted = tmp_path / "c.zip"
    encrypted.write_bytes(
        pickle_corpus.zip_member_flagged_encrypted().replace(
            b"archive/data.pkl", b"archive/Dockerfile"
        )
    )
    assert dockerfile.scan(encrypted, "c.zip").state == "failed"


def test_models_run_in_a_capped_child_process(tmp_path):
    small = _identity_onnx(tmp_path / "small.onnx", onnx.TensorProto.FLOAT, [2, 3])
    report = inference.run_isolated("functional_io", small)
    assert report.state == "passed"
    assert report.details["outputs"][0]["shape"] == [2, 3]
    bench = inference.run_isolated("benchmark", small, runs=3, warmup=0)
    assert bench.state == "passed" and bench.details["runs"] == 3
    # a cap the runtime cannot even load within: the scan fails, we go on
    starved = inference.run_isolated("functional_io", small, memory_mb=64)
    assert starved.state == "failed"
    assert "failed" in starved.summary or "64 MiB" in starved.summary
    slow = inference.run_isolated("functional_io", small, timeout=0.001)
    assert slow.state == "failed" and "over" in slow.summary
    with pytest.raises(ValueError):
        inference.run_isolated("os.system", small)
