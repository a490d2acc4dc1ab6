"""The PWA (/mlops/app) in a real browser (Chromium, headless) on a real
Odoo with its job runner, a real S3 and the local runtime: a User uploads a
version straight to S3 (the connection dropped once in the middle), sees it
validated live through the bus, an Approver approves it for staging,
promotes it and rolls a later production back, and leaves feedback; every
control is reached with the keyboard and has a label, and the page never
logs an error. What happened is read back through REST and the invoke URL.
Then the network goes away: the shell and the offline page come from the
service worker.

With ``MLOPS_SCREENSHOTS`` naming a folder, the pages are saved there as
PNG files along the way (docs/screenshots comes from such a run).
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import samples
import systemstack
import testservers
from browser import Chromium
from test_deployments import BODY, _deploy, _entry, _validated, _wait

USER = "creativeflow_mlops.group_mlops_user"
APPROVER = "creativeflow_mlops.group_mlops_approver"
STATE = "document.querySelector('h1 [data-state]')?.dataset.state"


def _cookie(stack, login, groups):
    rest = stack.user(login, groups)
    session = systemstack.WebSession(
        stack.server.url, stack.dbname, login, f"{login}-pw-1"
    )
    return rest, session.http.cookies["session_id"]


@pytest.fixture(scope="module")
def people(stack):
    return {
        "user": _cookie(stack, "pwa_user", [USER]),
        "approver": _cookie(stack, "pwa_approver", [APPROVER]),
    }


def _shoot(browser, name):
    folder = os.environ.get("MLOPS_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.pump(1.0)
        browser.screenshot(str(Path(folder) / f"pwa-{name}.png"))


def _page(browser, url, hash_):
    # a page of its own (a new session cookie, say), not a hash change
    browser.open("about:blank")
    browser.open(f"{url}/mlops/app{hash_}")
    browser.until("!!document.querySelector('.o_mlops_main h1, .o_mlops_error')")
    # the page is built: every control it shows can be named
    assert browser.unlabelled_controls() == []


def _submit(browser, button):
    """Reach ``button`` with Tab and press Enter, as a keyboard user does."""
    browser.tab_to(button)
    browser.press("Enter")


def _fill(browser, control, text):
    browser.tab_to(control)
    browser.type(text)


def _serves(entry, invoke):
    answer = requests.post(entry["invoke_url"], json=BODY, headers=invoke, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-MLOps-Version"]


def test_upload_to_production_and_back_in_the_pwa(
    stack, people, invoke, name, tmp_path
):
    url = stack.server.url
    user_rest, user_cookie = people["user"]
    approver_rest, approver_cookie = people["approver"]
    artifact = tmp_path / "sentiment.onnx"
    artifact.write_bytes(samples.onnx_mlp(seed=31))

    with Chromium() as browser:
        # the first part sent to S3 loses its connection on the way
        dropped = []

        def network(event):
            if event.get("method") != "Fetch.requestPaused":
                return
            paused = event["params"]
            if paused["request"]["method"] == "PUT" and not dropped:
                dropped.append(paused["request"]["url"])
                browser.send(
                    "Fetch.failRequest",
                    requestId=paused["requestId"],
                    errorReason="ConnectionReset",
                )
            else:
                browser.send("Fetch.continueRequest", requestId=paused["requestId"])

        browser.send(
            "Fetch.enable",
            patterns=[
                {"urlPattern": f"*{stack.s3.endpoint}*", "requestStage": "Request"}
            ],
        )

        # a User uploads the version from the upload page
        browser.set_cookie(url, "session_id", user_cookie)
        _page(browser, url, "#/upload")
        assert not browser.evaluate("!!document.querySelector('button[name=approve]')")
        browser.set_files("#mlops-file", [str(artifact)])
        _fill(browser, "#mlops-model", name)
        _fill(browser, "#mlops-version", "1.0.0")
        _fill(browser, "#mlops-description", "Uploaded from the PWA")
        _submit(browser, "button[name=upload]")
        hash_ = browser.until(
            "location.hash.startsWith('#/versions/') && location.hash",
            timeout=120,
            on_event=network,
        )
        assert dropped, "the upload never went to S3"
        browser.send("Fetch.disable")
        version_id = int(hash_.rsplit("/", 1)[1])
        # retried, not started again: one upload, its one part, completed
        (upload,) = stack.admin.call(
            "mlops.upload",
            "search_read",
            [("version_id", "=", version_id)],
            fields=["state", "part_count"],
        )
        assert upload["part_count"] == 1

        # validated live: the bus tells the page, which is not reloaded
        browser.evaluate("window.mlopsNotReloaded = true")
        browser.until(f"{STATE} === 'validated'", timeout=180)
        assert browser.evaluate("window.mlopsNotReloaded") is True
        assert (
            browser.evaluate(
                "[...document.querySelectorAll('.o_mlops_timeline li')]"
                ".map((li) => li.textContent).join(' ')"
            ).count("Validat")
            >= 2
        )  # validating, then validated
        assert user_rest.get(f"/versions/{version_id}").json()["state"] == "validated"
        # a User has no approve button
        assert not browser.evaluate("!!document.querySelector('button[name=approve]')")
        _shoot(browser, "version-validated")

        # the Approver approves staging, then promotes, with the keyboard
        browser.set_cookie(url, "session_id", approver_cookie)
        _page(browser, url, f"#/versions/{version_id}")
        _fill(browser, "#mlops-approve-reason", "Scans clean, metrics fine")
        _submit(browser, "button[name=approve]")
        browser.until(f"{STATE} === 'staging'", timeout=180)
        staging = _entry(approver_rest, name, "staging")
        assert _serves(staging, invoke) == "1.0.0"

        assert browser.unlabelled_controls() == []
        browser.tab_to("#mlops-strategy")
        # the canary's first share is asked for only for a canary
        assert not browser.evaluate("!!document.querySelector('#mlops-canary')")
        browser.evaluate(
            "(() => { const s = document.querySelector('#mlops-strategy');"
            " s.value = 'canary'; s.dispatchEvent(new Event('change')); })()"
        )
        browser.until("!!document.querySelector('#mlops-canary')")
        assert browser.unlabelled_controls() == []
        browser.evaluate(
            "(() => { const s = document.querySelector('#mlops-strategy');"
            " s.value = 'blue_green'; s.dispatchEvent(new Event('change')); })()"
        )
        browser.until("!document.querySelector('#mlops-canary')")
        _fill(browser, "#mlops-promote-reason", "Staging soaked clean")
        _submit(browser, "button[name=promote]")
        browser.until(f"{STATE} === 'production'", timeout=180)
        production = _entry(approver_rest, name, "production")
        assert _serves(production, invoke) == "1.0.0"
        _shoot(browser, "version-production")

        # feedback, the rating chosen with the arrow keys
        browser.tab_to("#mlops-rating-1")
        browser.press("ArrowRight", times=3)
        _fill(browser, "#mlops-comment", "Sharp results")
        _submit(browser, "button[name=feedback]")
        browser.until(
            "document.querySelector('.o_mlops_feedback')?.textContent"
            ".includes('Sharp results')"
        )
        (feedback,) = approver_rest.get(f"/versions/{version_id}/feedback").json()[
            "items"
        ]
        assert (feedback["rating"], feedback["user"]) == (4, "pwa_approver")

        # the live endpoints with their traffic
        _page(browser, url, "#/deployments")
        browser.until(
            f"[...document.querySelectorAll('.o_mlops_endpoint')]"
            f".some((card) => card.textContent.includes({name!r} + ' · production'))"
        )
        assert "100%" in browser.evaluate(
            "document.querySelector('.o_mlops_traffic').textContent"
        )
        _shoot(browser, "deployments")

        # a second version reaches production through REST; the Approver
        # rolls it back from its page
        second, _data = _validated(stack, name, "1.1.0", seed=32)
        assert _deploy(approver_rest, second, "deploy")["state"] == "active"
        green = _deploy(approver_rest, second, "promote", strategy="blue_green")
        assert green["state"] == "active"
        assert _serves(production, invoke) == "1.1.0"
        _page(browser, url, f"#/versions/{second}")
        _fill(browser, "#mlops-rollback-reason", "Error rate doubled")
        _submit(browser, "button[name=rollback]")
        browser.until(f"{STATE} === 'deprecated'", timeout=180)
        _wait(
            approver_rest,
            f"/versions/{version_id}",
            lambda v: v["state"] == "production",
        )
        assert _serves(production, invoke) == "1.0.0"

        # the models page and its search
        _page(browser, url, "#/models")
        _fill(browser, "#mlops-search", name)
        browser.press("Enter")
        browser.until(
            f"[...document.querySelectorAll('.o_mlops_card_title')]"
            f".map((a) => a.textContent).join() === {name!r}"
        )
        _shoot(browser, "models")
        assert browser.problems == []

    ledger = stack.admin.call(
        "mlops.promotion",
        "search_read",
        [("model_id.name", "=", name)],
        fields=["kind", "environment", "reason", "approved_by_id"],
        order="id",
    )
    reasons = [(e["environment"], e["reason"]) for e in ledger]
    assert ("staging", "Scans clean, metrics fine") in reasons
    assert ("production", "Staging soaked clean") in reasons
    assert reasons[-1] == ("production", "Error rate doubled")


def test_the_shell_and_the_offline_page_without_a_network(stack, people):
    """Installable (manifest, worker), and usable without the network: the
    app's shell from the worker's cache, any other page of the app as the
    offline page."""
    _rest, cookie = people["user"]
    port = urlsplit(stack.server.url).port
    with testservers.TcpProxy(port) as proxy, Chromium() as browser:
        browser.set_cookie(proxy.url, "session_id", cookie)
        _page(browser, proxy.url, "")
        manifest = browser.evaluate(
            "fetch(document.querySelector('link[rel=manifest]').href)"
            ".then((r) => r.json())"
        )
        assert manifest["start_url"] == "/mlops/app"
        assert manifest["display"] == "standalone"
        assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}
        assert browser.until(
            "navigator.serviceWorker.ready.then((r) => r.active.state === 'activated')"
        )
        # controlled from the next load: the bundles go to the cache
        _page(browser, proxy.url, "")
        browser.until("!!navigator.serviceWorker.controller")
        cached = browser.evaluate(
            "caches.keys().then((keys) => caches.open(keys[0]))"
            ".then((cache) => cache.keys()).then((r) => r.map((q) => q.url))"
        )
        assert f"{proxy.url}/mlops/app" in cached
        assert f"{proxy.url}/mlops/app/offline" in cached
        assert any("/web/assets/" in url and url.endswith(".js") for url in cached)

        proxy.stop()
        browser.open("about:blank")
        browser.open(f"{proxy.url}/mlops/app#/models")
        browser.until("!!document.querySelector('.o_mlops_main h1')")
        # the shell came from the cache; the data cannot come
        browser.until(
            "document.querySelector('.o_mlops_error')?.textContent"
            ".includes('cannot be reached')"
        )
        _shoot(browser, "offline-shell")
        browser.open(f"{proxy.url}/mlops/app/offline-check")
        assert browser.until(
            "document.querySelector('h1')?.textContent === 'You are offline'"
        )
        assert browser.unlabelled_controls() == []
        assert browser.problems == []
