from . import mlops_version_approval_wizard
from . import mlops_deployment_rollback_wizard
from . import mlops_invoke_key_wizard
