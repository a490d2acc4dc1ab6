"""A real browser for the system tests: Debian's Chromium, headless, driven
through the DevTools protocol (``websocket-client``), as a user's browser
talks to a real Odoo server. ``run_tour`` plays one of the addon's web
tours (``static/src/tours``) the way Odoo's own ``start_tour`` does: the
page loaded with ``?debug=tests`` (which brings the tours), then
``odoo.startTour``, until the console says "tour succeeded"; a console
error or an uncaught exception fails it.
"""

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket
from testservers import free_port, unlimited_address_space

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
    "--remote-allow-origins=*",
)


class BrowserError(AssertionError):
    pass


class Chromium:
    def __init__(self):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if not binary:
            raise RuntimeError("no chromium: apt-get install chromium (bin/test does)")
        self.profile = tempfile.mkdtemp(prefix="mlops-chromium-")
        self.port = free_port()
        self.log = open(f"{self.profile}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=unlimited_address_space,
        )
        self._ids = itertools.count(1)
        self.events = []
        # console errors and uncaught exceptions of the pages, in order
        self.problems = []
        self.socket = websocket.create_connection(
            self._page_socket(), timeout=60, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")

    def _page_socket(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/json/list", timeout=2
                ) as answer:
                    pages = [t for t in json.load(answer) if t["type"] == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                with open(self.log.name, "rb") as log:
                    tail = log.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"chromium did not open its DevTools port:\n{tail}")
            time.sleep(0.2)

    def send(self, method, **params):
        """A DevTools command's result; events that arrive meanwhile are kept."""
        command_id = next(self._ids)
        self.socket.send(
            json.dumps({"id": command_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == command_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)
            self.events.append(message)

    def _next_event(self, timeout):
        if self.events:
            return self.events.pop(0)
        self.socket.settimeout(timeout)
        try:
            return self._note(json.loads(self.socket.recv()))
        except websocket.WebSocketTimeoutException:
            return None
        finally:
            self.socket.settimeout(60)

    def set_cookie(self, url, name, value):
        self.send("Network.setCookie", url=url, name=name, value=value)

    def open(self, url, timeout=60):
        self.events.clear()
        self.send("Page.navigate", url=url)
        self._wait_for(lambda e: e.get("method") == "Page.loadEventFired", timeout)

    def evaluate(self, expression):
        result = self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _wait_for(self, matches, timeout, failing=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self._next_event(max(0.05, min(1.0, deadline - time.monotonic())))
            if event is None:
                continue
            if failing:
                failing(event)
            if matches(event):
                return event
        raise BrowserError(f"waited {timeout} s")

    @staticmethod
    def _console_text(event):
        params = event.get("params", {})
        return " ".join(
            str(arg.get("value", arg.get("description", "")))
            for arg in params.get("args", [])
        )

    def run_tour(self, base_url, path, tour, timeout=120):
        """Play ``tour`` from ``path``; raise ``BrowserError`` with what the
        console said when it fails."""
        separator = "&" if "?" in path else "?"
        self.open(f"{base_url}{path}{separator}debug=tests")
        deadline = time.monotonic() + 60
        while not self.evaluate(
            f"!!(window.odoo && odoo.isTourReady && odoo.isTourReady({tour!r}))"
        ):
            if time.monotonic() > deadline:
                raise BrowserError(f"tour {tour} never got ready on {path}")
            time.sleep(0.2)
        said = []

        def failing(event):
            method = event.get("method")
            if method == "Runtime.exceptionThrown":
                raise BrowserError(
                    f"tour {tour}: {event['params']['exceptionDetails']}\n"
                    + "\n".join(said)
                )
            if method == "Runtime.consoleAPICalled":
                text = self._console_text(event)
                said.append(text)
                if event["params"]["type"] == "error":
                    raise BrowserError(f"tour {tour}: {text}\n" + "\n".join(said))

        options = {"stepDelay": 0, "keepWatchBrowser": False, "startUrl": path}
        self.send(
            "Runtime.evaluate",
            expression=f"odoo.startTour({tour!r}, {json.dumps(options)})",
        )
        try:
            self._wait_for(
                lambda e: (
                    e.get("method") == "Runtime.consoleAPICalled"
                    and "tour succeeded" in self._console_text(e)
                ),
                timeout,
                failing,
            )
        except BrowserError as error:
            raise BrowserError(f"{error}\n" + "\n".join(said[-20:])) from None

    # ------------------------------------------------------------------
    # Driving a page as a user does: keyboard, files, and what it said
    # ------------------------------------------------------------------

    def _note(self, event):
        """Keep what the page said went wrong: console errors and uncaught
        exceptions, whichever call happened to read them."""
        method = event.get("method")
        if method == "Runtime.exceptionThrown":
            details = event["params"]["exceptionDetails"]
            self.problems.append(
                details.get("exception", {}).get("description") or str(details)
            )
        elif (
            method == "Runtime.consoleAPICalled" and event["params"]["type"] == "error"
        ):
            self.problems.append(self._console_text(event))
        return event

    def pump(self, seconds, on_event=None):
        """Handle the events of ``seconds``, each given to ``on_event``."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            event = self._next_event(max(0.01, left)) if left > 0 else None
            if event is None:
                if time.monotonic() >= deadline:
                    return
                continue
            if on_event:
                on_event(event)

    def until(self, expression, timeout=60, on_event=None):
        """Wait until the JavaScript ``expression`` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression} still false after {timeout} s")
            self.pump(0.25, on_event)

    def press(self, key, times=1):
        """Press a key (``Tab``, ``Enter``, ``ArrowRight``, ...) as a keyboard does."""
        codes = {"Tab": 9, "Enter": 13, "ArrowRight": 39, "ArrowLeft": 37, " ": 32}
        for _ in range(times):
            for kind in ("rawKeyDown", "keyUp"):
                self.send(
                    "Input.dispatchKeyEvent",
                    type=kind,
                    key=key,
                    code="Space" if key == " " else key,
                    windowsVirtualKeyCode=codes.get(key, 0),
                )
            if key == "Enter":
                self.send("Input.dispatchKeyEvent", type="char", text="\r")

    def type(self, text):
        """Type ``text`` into the focused control."""
        self.send("Input.insertText", text=text)

    def tab_to(self, selector, limit=80):
        """Press Tab until ``selector`` has the focus: the control is reachable
        from the keyboard, in the page's own order."""
        for _ in range(limit):
            if self.evaluate(
                f"document.activeElement === document.querySelector({selector!r})"
            ):
                return
            self.press("Tab")
        raise BrowserError(f"{selector} never got the focus after {limit} Tabs")

    def set_files(self, selector, paths):
        """Choose ``paths`` in the file input ``selector``, as the file
        picker does (its ``change`` event included)."""
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no {selector}")
        self.send("DOM.setFileInputFiles", nodeId=node, files=list(paths))

    def unlabelled_controls(self):
        """The visible form controls a screen reader could not name."""
        return self.evaluate(
            """[...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => el.type !== 'hidden' && el.getClientRects().length)
            .filter((el) => !(
                (el.labels && el.labels.length)
                || el.getAttribute('aria-label')
                || el.getAttribute('aria-labelledby')
                || (el.tagName === 'BUTTON' && el.textContent.trim())))
            .map((el) => el.outerHTML.slice(0, 120))"""
        )

    def wait_for_selector(self, selector, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"!!document.querySelector({selector!r})"):
            if time.monotonic() > deadline:
                raise BrowserError(f"no {selector} after {timeout} s")
            time.sleep(0.2)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))

    def close(self):
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.log.close()
            os.unlink(self.log.name)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
