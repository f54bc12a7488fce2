"""One real-browser check: `retrieval app` serves the page, Chromium types a query, both columns render.

The app is started as a user starts it on a run made elsewhere: from another working
directory, without ``RETRIEVAL_DATA``, for a run whose ``data`` spec was relative to the
folder it was made in; it must find the corpus through ``run.json``'s absolute
``data_path`` and show titles, snippets and relevance marks, not bare document ids.

Needs Debian's ``chromium`` (``.ci/extras`` installs it in CI) and the ``playwright``
Python package driving it; never ``playwright install``. The screenshot is kept under
``$TEST_ARTIFACTS`` (else the test's tmp dir) and its path printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium chromium-driver; CI's .ci/extras does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def served(fresh_run, tmp_path: Path):
    import json

    run = fresh_run("tuned-index")
    info = json.loads((run / "run.json").read_text())
    info["data_path"], info["data"] = info["data"], "data"  # "data" resolved only from the folder it was made in
    (run / "run.json").write_text(json.dumps(info))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RETRIEVAL_DATA"} | {"RETRIEVAL_CACHE": str(tmp_path / "cache")}
    port = free_port()
    cli = "import sys; from cli import main; sys.exit(main())"
    server = subprocess.Popen([sys.executable, "-c", cli, "app", str(run), "--port", str(port)], cwd=elsewhere, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def test_a_query_typed_in_chromium_renders_base_and_tuned_results(served: str, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra has it)")
    artifacts = Path(os.environ.get("TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "app_search.png"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.goto(served, wait_until="domcontentloaded")
            box = page.get_by_label("Query")
            box.wait_for(timeout=60_000)
            box.fill("cats purr")
            box.press("Enter")
            for heading in ("Base model", "Tuned model"):
                page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
            page.get_by_text("First relevant document").first.wait_for(timeout=30_000)
            for side in ("base", "tuned"):  # the last of the 10 cards of each column
                page.locator(f".st-key-hit-{side}-10").wait_for(timeout=30_000)
            page.wait_for_timeout(500)  # let the last cards paint before the screenshot
            assert page.get_by_text("relevant", exact=False).count() >= 2
            assert page.get_by_text("cat 0", exact=False).count() >= 2  # the title, in both columns
            assert page.get_by_text("cats purr and sleep", exact=False).count() >= 2  # and the snippet
            assert page.get_by_text("titles unavailable", exact=False).count() == 0
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
