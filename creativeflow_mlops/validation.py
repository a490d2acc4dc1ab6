"""Which scans run on which model format, and whether a failure blocks.

Plain data below the models; ``mlops.validation.policy`` records override
single cells of this table from the settings.
"""

BLOCK = "block"
WARN = "warn"
OFF = "off"

MODES = [(BLOCK, "Blocking"), (WARN, "Warning Only"), (OFF, "Not Run")]

PICKLE_FORMATS = {"pickle", "pytorch_torchscript", "other", "custom_python_container"}
RUNTIME_FORMATS = {"onnx"}


def default_mode(model_format, scan_type):
    if scan_type in ("integrity", "format"):
        return BLOCK
    if scan_type == "security_artifact":
        return BLOCK if model_format in PICKLE_FORMATS else OFF
    if scan_type == "security_container":
        return BLOCK if model_format == "custom_python_container" else OFF
    if scan_type == "functional_io":
        return BLOCK if model_format in RUNTIME_FORMATS else OFF
    if scan_type == "performance_benchmark":
        return WARN if model_format in RUNTIME_FORMATS else OFF
    if scan_type == "content_safety":
        return WARN
    return OFF
