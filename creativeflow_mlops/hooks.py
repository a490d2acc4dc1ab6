# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from .services import registry_changes


def uninstall_hook(env):
    # the SQL objects no model owns (the models' tables go with the models)
    registry_changes.uninstall(env.cr)
