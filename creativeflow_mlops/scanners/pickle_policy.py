"""What a pickle may import: the allowlist of ML globals the scanner
admits, and why anything else is refused.

A security review changes this file alone: the walker (``pickle_walk``)
asks ``is_allowed`` of every import and ``danger_of`` of a refused one.
"""

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
