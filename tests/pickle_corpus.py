"""A corpus of malicious and benign pickles, generated (never committed).

``write_corpus(folder)`` returns ``{filename: expected}`` where expected is
"malicious" or "benign". Malicious files only *describe* calls: nothing here
is ever unpickled.
"""

import builtins
import collections
import gzip
import io
import os
import pickle
import pickletools
import struct
import zipfile

import numpy as np

P = pickletools.code2op  # opcode by code


def op(name):
    for opcode in pickletools.opcodes:
        if opcode.name == name:
            return opcode.code.encode("latin-1")
    raise KeyError(name)


def unicode(text):
    data = text.encode()
    return op("SHORT_BINUNICODE") + bytes([len(data)]) + data


class _Call:
    """Pickles as ``func(*args)`` without ever being called."""

    def __init__(self, func, *args):
        self.func = func
        self.args = args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle wants a callable; never called
        raise RuntimeError("corpus objects are never called")


def reduce_pickles():
    import runpy
    import socket
    import subprocess

    calls = {
        "os_system": _Call(os.system, "echo pwned"),
        "builtins_eval": _Call(builtins.eval, "__import__('os').system('id')"),
        "builtins_exec": _Call(builtins.exec, "import os; os.system('id')"),
        "subprocess_popen": _Call(subprocess.Popen, ["id"]),
        "socket_connect": _Call(socket.create_connection, ("127.0.0.1", 1)),
        "runpy_run_path": _Call(runpy.run_path, "/nonexistent.py"),
        "importlib_import": _Call(__import__("importlib").import_module, "os"),
        # getattr(__import__('os'), 'system') as a nested reduce chain
        "nested_getattr_chain": _Call(
            _Call(builtins.getattr, _Call(builtins.__import__, "os"), "system"), "id"
        ),
    }
    return calls


def stack_global_from_memo(protocol=4):
    """os.system built by STACK_GLOBAL from strings fetched from the memo,
    with unrelated pushes between them."""
    return b"".join(
        [
            op("PROTO") + bytes([protocol]),
            unicode("os"),
            op("MEMOIZE"),
            op("POP"),
            unicode("harmless"),
            op("MEMOIZE"),
            op("POP"),
            unicode("system"),
            op("MEMOIZE"),
            op("POP"),
            op("BINGET") + b"\x00",
            op("BINGET") + b"\x02",
            op("STACK_GLOBAL"),
            unicode("id"),
            op("TUPLE1"),
            op("REDUCE"),
            op("STOP"),
        ]
    )


def computed_module():
    """STACK_GLOBAL whose module is the result of a call: unresolvable."""
    return b"".join(
        [
            op("PROTO") + b"\x04",
            unicode("builtins"),
            unicode("str"),
            op("STACK_GLOBAL"),
            unicode("os"),
            op("TUPLE1"),
            op("REDUCE"),
            unicode("system"),
            op("STACK_GLOBAL"),
            op("STOP"),
        ]
    )


def inst_protocol0():
    return b"(S'id'\nios\nsystem\n."


def torch_like_zip(payload):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", os.urandom(64))
    return buffer.getvalue()


def zip_member_flagged_encrypted():
    """A TorchScript-like zip whose data.pkl claims to be encrypted (flag
    bit 0 set in its local and central headers)."""
    data = bytearray(torch_like_zip(pickle.dumps(_Call(os.system, "id"), 2)))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)  # the first member is data.pkl
        data[start + offset] |= 0x1
    return bytes(data)


def zip_member_with_method(method):
    """A zip whose data.pkl names a compression method zipfile cannot read
    (the stored bytes are a malicious pickle)."""
    data = bytearray(torch_like_zip(pickle.dumps(_Call(os.system, "id"), 2)))
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = data.find(signature)  # the first member is data.pkl
        data[start + offset : start + offset + 2] = method.to_bytes(2, "little")
    return bytes(data)


def torch_like_state_dict():
    """A benign PyTorch-style pickle: an OrderedDict of rebuilt tensors."""
    tensor = b"".join(
        [
            op("GLOBAL") + b"torch._utils\n_rebuild_tensor_v2\n",
            op("MARK"),
            op("MARK"),
            unicode("storage"),
            op("GLOBAL") + b"torch\nFloatStorage\n",
            unicode("0"),
            unicode("cpu"),
            op("BININT1") + b"\x04",
            op("TUPLE"),
            op("BINPERSID"),
            op("BININT1") + b"\x00",
            op("BININT1") + b"\x04",
            op("TUPLE1"),
            op("BININT1") + b"\x01",
            op("TUPLE1"),
            op("NEWFALSE"),
            op("GLOBAL") + b"collections\nOrderedDict\n",
            op("EMPTY_TUPLE"),
            op("REDUCE"),
            op("TUPLE"),
            op("REDUCE"),
        ]
    )
    return b"".join(
        [
            op("PROTO") + b"\x02",
            op("GLOBAL") + b"collections\nOrderedDict\n",
            op("EMPTY_TUPLE"),
            op("REDUCE"),
            op("MARK"),
            unicode("linear.weight"),
            tensor,
            op("SETITEMS"),
            op("STOP"),
        ]
    )


def write_corpus(folder):
    folder = str(folder)
    expected = {}

    def put(name, data, verdict):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data)
        expected[name] = verdict

    for name, call in reduce_pickles().items():
        for protocol in (0, 2, 4, 5):
            put(
                f"evil_{name}_p{protocol}.pkl",
                pickle.dumps(call, protocol=protocol),
                "malicious",
            )
    put("evil_stack_global_memo_p4.pkl", stack_global_from_memo(4), "malicious")
    put("evil_stack_global_memo_p5.pkl", stack_global_from_memo(5), "malicious")
    put("evil_computed_module.pkl", computed_module(), "malicious")
    put("evil_inst_p0.pkl", inst_protocol0(), "malicious")
    put(
        "evil_torch_zip.pt",
        torch_like_zip(pickle.dumps(_Call(os.system, "id"), 2)),
        "malicious",
    )
    put(
        "evil_joblib_gzip.joblib",
        gzip.compress(pickle.dumps(_Call(os.system, "id"), 4)),
        "malicious",
    )
    put(
        "evil_second_pickle.pkl",
        pickle.dumps({"ok": 1}, 4) + pickle.dumps(_Call(os.system, "id"), 4),
        "malicious",
    )
    put("evil_truncated.pkl", pickle.dumps(_Call(os.system, "id"), 4)[:-3], "malicious")
    # members nobody can read are not vouched for
    put("evil_zip_encrypted.pt", zip_member_flagged_encrypted(), "malicious")
    put("evil_zip_unknown_compression.pt", zip_member_with_method(99), "malicious")
    put(
        "evil_truncated_gzip.pkl.gz",
        gzip.compress(pickle.dumps(_Call(os.system, "id"), 4))[:-12],
        "malicious",
    )

    benign = {
        "plain": {"weights": [0.1, 0.2], "labels": ("a", "b"), "n": 3},
        "ordered": collections.OrderedDict(
            w=np.arange(6, dtype=np.float32).reshape(2, 3)
        ),
        "numpy": {"emb": np.random.default_rng(0).normal(size=(64, 16))},
        "sets": {
            "vocab": {"x", "y"},
            "frozen": frozenset({1, 2}),
            "blob": bytearray(b"ab"),
        },
    }
    for name, obj in benign.items():
        for protocol in (0, 2, 4, 5):
            put(
                f"ok_{name}_p{protocol}.pkl",
                pickle.dumps(obj, protocol=protocol),
                "benign",
            )
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        rng = np.random.default_rng(1)
        features, labels = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
        model = make_pipeline(StandardScaler(), LogisticRegression()).fit(
            features, labels
        )
        for protocol in (2, 4, 5):
            put(
                f"ok_sklearn_p{protocol}.pkl",
                pickle.dumps(model, protocol=protocol),
                "benign",
            )
    except ImportError:
        pass
    put("ok_torch_zip.pt", torch_like_zip(torch_like_state_dict()), "benign")
    try:
        import joblib

        arrays = {
            "weights": np.arange(12.0).reshape(3, 4),
            "labels": np.array(["cat", "dog"]),
            "mixed": np.array([1, "x", None], dtype=object),
        }
        for compress in (0, 3, ("gzip", 3)):
            tag = compress[0] if isinstance(compress, tuple) else f"z{compress}"
            for name, obj, verdict in (
                ("arrays", arrays, "benign"),
                (
                    "object_array_call",
                    {"o": np.array([1, _Call(os.system, "id")], dtype=object)},
                    "malicious",
                ),
            ):
                path = os.path.join(
                    folder,
                    f"{'ok' if verdict == 'benign' else 'evil'}"
                    f"_joblib_{name}_{tag}.joblib",
                )
                joblib.dump(obj, path, compress=compress)
                expected[os.path.basename(path)] = verdict
        if "ok_sklearn_p4.pkl" in expected:
            path = os.path.join(folder, "ok_joblib_sklearn.joblib")
            joblib.dump(model, path)
            expected["ok_joblib_sklearn.joblib"] = "benign"
    except ImportError:
        pass
    put("ok_gzip.pkl.gz", gzip.compress(pickle.dumps(benign["numpy"], 4)), "benign")
    return expected


def write_two_million_tuples(path, count=2_000_000):
    """~100 MB, ~16M opcodes: the benchmark's small-objects shape."""
    with open(path, "wb") as handle:
        pickle.dump(
            [(i, float(i), f"item-{i:09d}", i * 2) for i in range(count)], handle, 4
        )


def write_large_arrays(path, total_mb=500):
    """Large float arrays (in-band binary payloads)."""
    rng = np.random.default_rng(2)
    arrays = {}
    per = 50
    for index in range(total_mb // per):
        arrays[f"layer{index}.weight"] = rng.standard_normal(per * 1024 * 1024 // 8)
    with open(path, "wb") as handle:
        pickle.dump(arrays, handle, 4)


__all__ = ["write_corpus", "write_large_arrays", "write_two_million_tuples", "struct"]
