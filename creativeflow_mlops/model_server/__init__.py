"""The local inference runtime: a model server per deployment (server.py, a
standalone program Odoo starts in its own process) and what Odoo uses to
start, watch and stop those processes (adapters.processes). Nothing here
imports Odoo."""
