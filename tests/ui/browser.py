"""The page in Debian's Chromium, headless, driven by Playwright: shared by the browser
tests of ``captioner ui`` as a process and of the UI container."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# As the machine's notes say: without these, Chromium keeps dialling Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/setup.sh installs Debian's chromium package")


def open_page(playwright, url: str):
    """A fresh browser on the page (a new Streamlit session), once it has drawn."""
    from playwright.sync_api import expect

    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    expect(page.get_by_text("Caption an image")).to_be_visible(timeout=60_000)
    return browser, page


def upload(playwright, url: str, photo: Path, expected: str):
    """Chromium on the page: the photo uploaded, the EXPECTED caption shown."""
    from playwright.sync_api import expect

    browser, page = open_page(playwright, url)
    page.locator("input[type=file]").set_input_files(str(photo))
    expect(page.get_by_role("heading", name=expected)).to_be_visible(timeout=60_000)
    return browser, page


def send_feedback(page, correction: str) -> None:
    """👎 with CORRECTION, sent; waits for the page's thanks."""
    from playwright.sync_api import expect

    page.get_by_text("👎 No").click()
    page.get_by_label("A better caption (optional)").fill(correction)
    page.get_by_role("button", name="Send feedback").click()
    expect(page.get_by_text("Thank you! Your feedback was saved.")).to_be_visible(timeout=30_000)
