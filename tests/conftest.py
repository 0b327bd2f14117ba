"""Fixtures shared by the web tests (test_web.py, test_web_phone.py): the real
``llmroofline serve`` process and headless Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """`llmroofline serve` on a free loopback port, one process for the whole session (the
    server keeps no state between requests, so the web tests can share it)."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w+")  # noqa: SIM115 (a pipe could fill up; closed below)
    proc = subprocess.Popen([sys.executable, "-m", "llmroofline", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/api/limits", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:  # refused while starting (URLError is an OSError)
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                log.seek(0)
                pytest.fail(f"server did not start: {log.read()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def chromium():
    """(Chromium executable, playwright.sync_api), or a skip with the reason."""
    exe = _chromium()
    if exe is None:
        reason = ("Chromium not found at /usr/bin/chromium or on PATH (Debian: apt-get install "
                  "-y chromium); the browser test is skipped")
        print(reason)
        pytest.skip(reason)
    return exe, pytest.importorskip("playwright.sync_api",
                                    reason="Playwright (Python package) is not installed")


@pytest.fixture(scope="session")
def chromium_flags() -> list[str]:
    """Command-line flags for a headless Chromium on a shared CI machine."""
    return list(CHROMIUM_FLAGS)
