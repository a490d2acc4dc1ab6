from . import framework
from . import multipart
from . import registry_api
from . import deployments_api
from . import ci_api
from . import rpc_api
from . import openapi
from . import fallback
