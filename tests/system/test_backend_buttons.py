"""The whole flow through the backend's buttons, in a real browser
(Chromium, headless) on a real Odoo with its job runner: an Approver
approves a validated version for staging, promotes it, and rolls a later
production back, each from the record's form; what happened is read back
through REST and the invoke URL only.

With ``MLOPS_SCREENSHOTS`` naming a folder, the pages are saved there as
PNG files along the way (docs/screenshots comes from such a run).
"""

import os
from pathlib import Path

import pytest
import requests
import systemstack
from browser import Chromium
from test_deployments import BODY, _deploy, _entry, _validated, _wait

APPROVER = "creativeflow_mlops.group_mlops_approver"
VERSIONS = "/odoo/action-creativeflow_mlops.mlops_model_version_action"
DEPLOYMENTS = "/odoo/action-creativeflow_mlops.mlops_deployment_action"


@pytest.fixture(scope="module")
def approver(stack):
    """The Approver's REST client and browser session cookie."""
    rest = stack.user("btn_approver", [APPROVER])
    session = systemstack.WebSession(
        stack.server.url, stack.dbname, "btn_approver", "btn_approver-pw-1"
    )
    return rest, session.http.cookies["session_id"]


def _state(rest, version_id, state, timeout=120):
    return _wait(
        rest, f"/versions/{version_id}", lambda v: v["state"] == state, timeout
    )


def _shoot(browser, url, path, selector, name):
    folder = os.environ.get("MLOPS_SCREENSHOTS")
    if not folder:
        return
    browser.open(f"{url}{path}")
    browser.wait_for_selector(selector)
    browser.evaluate("new Promise((done) => setTimeout(done, 1500))")
    Path(folder).mkdir(parents=True, exist_ok=True)
    browser.screenshot(str(Path(folder) / f"{name}.png"))


def shoot_as_admin(stack, pages):
    """Each of ``pages`` ((path, selector, file name)) seen by the admin,
    saved when ``MLOPS_SCREENSHOTS`` names a folder."""
    if not os.environ.get("MLOPS_SCREENSHOTS"):
        return
    with Chromium() as browser:
        browser.set_cookie(
            stack.server.url, "session_id", stack.admin.http.cookies["session_id"]
        )
        for path, selector, name in pages:
            _shoot(browser, stack.server.url, path, selector, name)


def _serves(entry, invoke):
    answer = requests.post(entry["invoke_url"], json=BODY, headers=invoke, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-MLOps-Version"]


def test_upload_to_production_and_back_through_the_buttons(
    stack, approver, invoke, name
):
    rest, cookie = approver
    url = stack.server.url
    first, _data = _validated(stack, name, "1.0.0", seed=11)
    with Chromium() as browser:
        browser.set_cookie(url, "session_id", cookie)

        browser.run_tour(
            url, f"{VERSIONS}/{first}", "creativeflow_mlops_approve_staging"
        )
        _state(rest, first, "staging")
        staging = _entry(rest, name, "staging")
        assert _serves(staging, invoke) == "1.0.0"

        browser.run_tour(url, f"{VERSIONS}/{first}", "creativeflow_mlops_promote")
        _state(rest, first, "production")
        _shoot(browser, url, f"{VERSIONS}/{first}", ".o_form_view", "version-form")
        production = _entry(rest, name, "production")
        assert _serves(production, invoke) == "1.0.0"

        # a second version reaches production through REST; the Approver
        # rolls it back from its deployment's form
        second, _data = _validated(stack, name, "1.1.0", seed=12)
        assert _deploy(rest, second, "deploy")["state"] == "active"
        green = _deploy(rest, second, "promote", strategy="blue_green")
        assert green["state"] == "active"
        assert _serves(production, invoke) == "1.1.0"
        _shoot(browser, url, DEPLOYMENTS, ".o_kanban_record", "live-endpoints")
        _shoot(
            browser, url, f"{DEPLOYMENTS}/{green['id']}", ".o_form_view", "deployment"
        )

        browser.run_tour(
            url, f"{DEPLOYMENTS}/{green['id']}", "creativeflow_mlops_roll_back"
        )
        _state(rest, first, "production")
        assert _state(rest, second, "deprecated")["state"] == "deprecated"
        # the same URL, the previous version again
        assert (
            _entry(rest, name, "production")["invoke_url"] == production["invoke_url"]
        )
        assert _serves(production, invoke) == "1.0.0"

    ledger = stack.admin.call(
        "mlops.promotion",
        "search_read",
        [("model_id.name", "=", name), ("environment", "=", "production")],
        fields=["kind", "reason", "approved_by_id", "version_after_id"],
        order="id",
    )
    assert [(e["kind"], e["reason"]) for e in ledger][-1] == (
        "rollback",
        "Error rate doubled",
    )
    assert ledger[0]["reason"] == "Staging soaked clean"
    assert {e["approved_by_id"][1] for e in ledger} == {"btn_approver"}
