"""The status page in a real browser: Debian's chromium driven headless by playwright.

Without chromium this module skips, saying why, unless CI is set: then it fails (CI installs
chromium, .ci/run). `CPLANE_WRITE_SCREENSHOTS=1` also writes the screenshots in docs/images/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest
from helpers import REPO, WatchProcess, libpq_url

pytestmark = pytest.mark.postgres

CHROMIUM = os.environ.get("CPLANE_CHROMIUM", "/usr/bin/chromium")
INTERVAL = 1.0
WITHIN = 2 * INTERVAL + 3.0  # two intervals plus a round's own time


def _browser_missing() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser():
    reason = _browser_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(f"SKIPPING browser test: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def shot(page, tmp_path: Path, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=full_page)
    if os.environ.get("CPLANE_WRITE_SCREENSHOTS"):
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, REPO / "docs" / "images" / name)


def test_status_page_shows_drift_with_its_diff_and_the_history(browser, pg_engine, config_tree, tmp_path):
    from control_plane.reconcile.controller import apply_config

    apply_config(pg_engine, config_tree.root, actor="test")
    url = libpq_url(pg_engine)
    with WatchProcess("--interval", "1s", database_url=url, config_dir=config_tree.root) as watch:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(watch.url + "/")
        page.wait_for_selector("#overall:text('In sync')", timeout=30_000)
        assert page.locator("tr[data-kind='Plan'] .badge").inner_text() == "in sync"
        shot(page, tmp_path, "watch-in-sync.png")

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE plans SET price_monthly = 99 WHERE slug = 'test-plan'")
        # The page refreshes by itself: no reload from the test.
        page.wait_for_selector("#overall:text('Drift')", timeout=WITHIN * 1000)
        change = page.locator("section#change-Plan-test-plan")
        change.wait_for(timeout=WITHIN * 1000)
        assert change.get_attribute("data-cause") == "drift"
        diff = change.locator("pre").inner_text()
        assert "test-plan" in diff and "99" in diff and "19" in diff
        assert page.locator("tr[data-kind='Plan'] .badge").inner_text() == "drift"
        shot(page, tmp_path, "watch-drift.png")

        # The drifted kind links to its change; the history links to each run's plan.
        page.locator("tr[data-kind='Plan'] a", has_text="test-plan").click()
        assert page.url.endswith("#change-Plan-test-plan")
        page.locator("a", has_text="#1").first.click()
        page.wait_for_selector("#run-plan")
        assert page.url.endswith("/runs/1")
        assert "Apply run #1" in page.locator("h1").inner_text()
        assert "test-plan" in page.locator("#run-plan").inner_text()
        shot(page, tmp_path, "watch-run.png", full_page=False)  # the plan of 2,000 creates is long

        # The keyboard reaches everything: Tab to the back link, Enter follows it.
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Back to the status page"
        page.keyboard.press("Enter")
        page.wait_for_selector("#overall")
        assert page.url.rstrip("/") == watch.url
        assert watch.stop() == 0
