from . import mlops_version_approval_wizard
