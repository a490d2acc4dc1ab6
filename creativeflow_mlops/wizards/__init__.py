from . import mlops_version_approval_wizard
from . import mlops_deployment_rollback_wizard
