"""Debian's Chromium driven by Playwright for Python (Playwright's own browser download is not reachable
here): where it is missing, the browser tests fail saying what to install, unless OCR_SERVE_SKIP_BROWSER=1
asks to skip them."""

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

SKIP_BROWSER_ENV = "OCR_SERVE_SKIP_BROWSER"
CHROMIUM_ENV = "OCR_SERVE_CHROMIUM"
"""A Chromium executable other than the one on PATH."""


def chromium() -> str:
    found = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        reason = "no Chromium for the browser tests"
        if os.environ.get(SKIP_BROWSER_ENV) == "1":  # said explicitly, never by accident
            pytest.skip(reason)
        pytest.fail(f"{reason}. Install it (sudo apt-get install chromium; `make test` does as root), point "
                    f"{CHROMIUM_ENV} at one, or set {SKIP_BROWSER_ENV}=1 to skip the browser tests.", pytrace=False)
    return found


@contextlib.contextmanager
def launched() -> Iterator:
    """A headless Chromium, closed after."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()
