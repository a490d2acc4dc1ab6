"""The Grafana dashboard in docs/ reads only figures that exist: the addon's
own (services/platform_metrics.py), the local model servers' and Triton's."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "monitoring" / "grafana-dashboard.json"
ADDON = ROOT / "creativeflow_mlops"


def _exported():
    names = set()
    figures = (ADDON / "services" / "platform_metrics.py").read_text()
    for name in re.findall(r'"(mlops_[a-z_]+)"', figures):
        names |= {name, f"{name}_sum", f"{name}_count"}
    server = (ADDON / "model_server" / "server.py").read_text()
    counters = re.findall(r'Counter\(\s*"(mlops_[a-z_]+)"', server)
    histograms = re.findall(r'Histogram\(\s*"(mlops_[a-z_]+)"', server)
    assert counters and histograms
    names |= {f"{name}_total" for name in counters}
    names |= {f"{name}_bucket" for name in histograms}
    # Triton's, as the plain manifests' server reports them
    return names | {"nv_inference_request_success", "nv_inference_request_failure"}


def test_every_panel_reads_a_figure_that_exists():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported()
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\b((?:mlops|nv)_[a-z_]+)", target["expr"]))
    assert used, "no figure read"
    assert used <= exported, sorted(used - exported)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
