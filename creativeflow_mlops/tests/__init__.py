from . import test_lifecycle
from . import test_approvals
from . import test_security
from . import test_multi_company
from . import test_server_actions
from . import test_ui_tour
from . import test_storage_backend
from . import test_validation_jobs
