# Copyright 2026 CreativeFlow
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The PWA's shell: /mlops/app for a logged-in user only, with the user's
MLOps rights; its manifest, service worker and offline page; its asset
bundle builds. The app itself is driven in a real browser by the system
tier (tests/system/test_pwa.py)."""

import json
import re

from odoo.tests import HttpCase, new_test_user, tagged

from ..lifecycle import APPROVER, USER


@tagged("post_install", "-at_install")
class TestPwaShell(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        new_test_user(cls.env, login="pwa_user", groups=USER)
        new_test_user(cls.env, login="pwa_approver", groups=APPROVER)
        new_test_user(cls.env, login="pwa_stranger", groups="base.group_user")

    def _info(self, html):
        found = re.search(r"odoo\.__mlops_info__ = (\{.*?\});\n", html)
        self.assertTrue(found, html[:2000])
        return json.loads(found.group(1))

    def test_the_app_needs_a_session(self):
        answer = self.url_open("/mlops/app", allow_redirects=False)
        self.assertEqual(answer.status_code, 303)
        self.assertTrue(
            answer.headers["Location"].endswith("/web/login?redirect=/mlops/app"),
            answer.headers["Location"],
        )

    def test_the_app_carries_the_users_rights(self):
        self.authenticate("pwa_user", "pwa_user")
        answer = self.url_open("/mlops/app")
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.headers["Cache-Control"], "no-store")
        html = answer.text
        self.assertIn(
            '<link rel="manifest" href="/mlops/app/manifest.webmanifest"', html
        )
        info = self._info(html)
        self.assertEqual(
            info["rights"], {"user": True, "approver": False, "manager": False}
        )
        self.assertEqual(info["user"]["login"], "pwa_user")
        self.assertIn(["onnx", "ONNX"], info["choices"]["model_format"])
        self.assertIn(["staging", "Staging"], info["choices"]["version_state"])
        # the bundle builds, with the app's modules and templates in it
        (script,) = re.findall(
            r'src="(/web/assets/[^"]+creativeflow_mlops\.assets_pwa[^"]*\.js)"', html
        )
        bundle = self.url_open(script)
        self.assertEqual(bundle.status_code, 200)
        for module in ("@creativeflow_mlops/pwa/app", "@bus/services/bus_service"):
            self.assertIn(module, bundle.text)
        self.assertIn("creativeflow_mlops.PwaVersion", bundle.text)
        (style,) = re.findall(
            r'href="(/web/assets/[^"]+creativeflow_mlops\.assets_pwa[^"]*\.css)"', html
        )
        self.assertIn(".o_mlops_header", self.url_open(style).text)

        self.authenticate("pwa_approver", "pwa_approver")
        rights = self._info(self.url_open("/mlops/app").text)["rights"]
        self.assertEqual(rights, {"user": True, "approver": True, "manager": False})
        # a user without MLOps rights gets the app, which tells them so;
        # every operation refuses them anyway
        self.authenticate("pwa_stranger", "pwa_stranger")
        rights = self._info(self.url_open("/mlops/app").text)["rights"]
        self.assertEqual(rights, {"user": False, "approver": False, "manager": False})

    def test_the_manifest_makes_it_installable(self):
        answer = self.url_open("/mlops/app/manifest.webmanifest")
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.headers["Content-Type"], "application/manifest+json")
        manifest = answer.json()
        self.assertEqual(
            (manifest["start_url"], manifest["scope"], manifest["display"]),
            ("/mlops/app", "/mlops/app", "standalone"),
        )
        self.assertTrue(manifest["name"] and manifest["short_name"])
        sizes = {icon["sizes"] for icon in manifest["icons"]}
        self.assertLessEqual({"192x192", "512x512"}, sizes)
        for icon in manifest["icons"]:
            image = self.url_open(icon["src"])
            self.assertEqual(image.status_code, 200, icon["src"])
            self.assertEqual(image.headers["Content-Type"].split(";")[0], icon["type"])
            if icon["type"] == "image/png":
                width, height = icon["sizes"].split("x")
                # PNG's IHDR: width and height, big-endian, at bytes 16-24
                self.assertEqual(
                    (
                        int.from_bytes(image.content[16:20], "big"),
                        int.from_bytes(image.content[20:24], "big"),
                    ),
                    (int(width), int(height)),
                )

    def test_the_service_worker_covers_the_app(self):
        answer = self.url_open("/mlops/app/sw.js")
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.headers["Service-Worker-Allowed"], "/mlops/app")
        self.assertEqual(answer.headers["Cache-Control"], "no-cache")
        self.assertTrue(answer.headers["Content-Type"].startswith("text/javascript"))
        self.assertNotIn("__MLOPS_SW_VERSION__", answer.text)
        version = re.search(r'const VERSION = "([0-9a-f]{12})";', answer.text)
        self.assertTrue(version, answer.text[:500])
        # the same worker, the same cache name: no cache thrown away for nothing
        self.assertEqual(self.url_open("/mlops/app/sw.js").text, answer.text)

    def test_the_offline_page_needs_nothing(self):
        answer = self.url_open("/mlops/app/offline")
        self.assertEqual(answer.status_code, 200)
        self.assertIn("You are offline", answer.text)
        self.assertIn('href="/mlops/app"', answer.text)
