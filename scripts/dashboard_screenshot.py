#!/usr/bin/env python
"""Log in to the dashboard of a kbsearch home folder in Chromium and save a screenshot.

Usage: scripts/dashboard_screenshot.py HOME OUT.png [--days N] [--at ISO-TIME] [--height PX]

Serves the app over HOME (``KBSEARCH_HOME``: its index and data/ folder, such as the one
scripts/simulate_traffic.py leaves) on 127.0.0.1 with the bundled articles, creates a
throwaway editor key (revoked at the end), logs in through the form in headless Chromium
(Debian's /usr/bin/chromium) and saves the top of the dashboard (or all of it). ``--at``
pins the clock the dashboard sees (with time-machine), so that the report covers a
simulated week, e.g.
``--at 2026-11-30T23:00:00+00:00 --days 7``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
from pathlib import Path

import time_machine
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from kbsearch.api import create_app
from kbsearch.config import load_settings
from kbsearch.service import SearchService
from kbsearch.stores.keys import KeyStore

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> int:
    """Serve, log in, screenshot, stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path, help="KBSEARCH_HOME folder to show.")
    parser.add_argument("out", type=Path, help="PNG file to write.")
    parser.add_argument("--days", type=int, default=7, choices=(1, 7, 30, 90),
                        help="Period of the report (default 7).")
    parser.add_argument("--at", type=dt.datetime.fromisoformat, default=None,
                        help="The time the dashboard takes as now (ISO 8601).")
    parser.add_argument("--height", type=int, default=1900,
                        help="Pixels from the top to save (default 1900: the report and the "
                             "content gaps); 0: the whole page.")
    args = parser.parse_args()
    settings = load_settings(environ={"KBSEARCH_HOME": str(args.home.resolve())},
                             articles=ROOT / "articles", model=load_settings().model,
                             rate_limit="", rate_limit_keyed="", rate_limit_callbacks="",
                             purge_every_hours=0)
    keys = KeyStore(settings.keys_file)
    stored, key = keys.create("editor", "dashboard screenshot")
    travel = time_machine.travel(args.at, tick=True) if args.at else None
    if travel:
        travel.start()
    app = create_app(search_service=SearchService(settings))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(base + "/admin/login")
            page.get_by_label("Editor API key").fill(key)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(base + "/admin*")
            page.goto(f"{base}/admin?days={args.days}")
            if args.height:
                page.set_viewport_size({"width": 1200, "height": args.height})
            page.screenshot(path=str(args.out), full_page=not args.height)
            browser.close()
    finally:
        server.shutdown()
        thread.join(timeout=10)
        if travel:
            travel.stop()
        keys.revoke(stored.key_id)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
