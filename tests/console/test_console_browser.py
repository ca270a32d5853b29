"""The console in a real browser: headless Chromium (Debian's) driven by Playwright, against a real
gateway over two real neurons serving the tiny model.

Every page records each request the browser makes; after each test none may have gone to another
origin. The test that walks through loading and eviction takes a screenshot; with
``CORTEX_REFRESH_SCREENSHOT=1`` it writes it over docs/console.png (the picture in docs/console.md),
otherwise into the test's temporary directory, so a test run never changes the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.console.conftest import ADMIN_KEY, ConsoleFleet
from tests.daemons import http_json

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (scripts/install-system-deps)"
    ),
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
TIMEOUT_MS = 60_000

# Records every value a model row's state badge takes, however briefly it is shown.
WATCH_STATES = """([node, model]) => {
  window.__seen = [];
  const look = () => {
    const badge = document.querySelector(
      `article[data-node="${node}"] tr[data-model="${model}"] [data-state]`);
    const value = badge ? badge.dataset.state : "absent";
    if (window.__seen[window.__seen.length - 1] !== value) window.__seen.push(value);
  };
  new MutationObserver(look).observe(document.getElementById("nodes"), { childList: true, subtree: true });
  look();
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, console_fleet: ConsoleFleet) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    requests: list[str] = []
    opened.on("request", lambda r: requests.append(r.url))
    opened.requests = requests  # type: ignore[assignment,method-assign]  # the recorded URLs, over Page.requests()
    yield opened
    context.close()
    assert requests, "the page made no request at all"
    foreign = [url for url in requests if not url.startswith(console_fleet.url + "/")]
    assert not foreign, f"the console reached another origin: {foreign}"
    assert not [url for url in requests if ADMIN_KEY in url], "the admin key appeared in a URL"


def sign_in(page: Page, fleet: ConsoleFleet) -> None:
    page.goto(f"{fleet.url}/console")
    page.locator("#key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.locator('article[data-node="n1"]').wait_for()


def row(page: Page, node: str, model: str) -> Locator:
    return page.locator(f'article[data-node="{node}"] tr[data-model="{model}"]')


def test_an_unauthenticated_load_gets_the_login_prompt_and_no_data(
    page: Page, console_fleet: ConsoleFleet
) -> None:
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url, r.status)))
    page.goto(f"{console_fleet.url}/console")
    page.locator("#login").wait_for(state="visible")
    page.get_by_text("an admin key is required").wait_for()
    assert page.locator("#app").is_hidden()
    assert page.locator("#nodes article").count() == 0
    data = [(url, status) for url, status in answers if "/console/api/" in url or "/admin/" in url]
    assert data and all(status == 401 for _, status in data), data
    # Keyboard: the key field has focus, and a wrong key brings the prompt back.
    assert page.evaluate("document.activeElement.id") == "key"
    page.keyboard.type("not-the-key")
    page.keyboard.press("Enter")
    page.get_by_text("an admin key is required").wait_for()
    assert page.locator("#nodes article").count() == 0


def test_the_page_lists_both_nodes_and_a_models_state_live(page: Page, console_fleet: ConsoleFleet) -> None:
    sign_in(page, console_fleet)
    assert page.locator("article[data-node]").count() == 2
    for node in ("n1", "n2"):
        page.locator(f'article[data-node="{node}"] .badge.s-up').wait_for()
    status, body, _ = http_json(
        "POST", f"{console_fleet.url}/admin/models/load", {"model": "p"}, token=ADMIN_KEY
    )
    assert status in (200, 202), body
    row(page, "n2", "p").locator('[data-state="ready"]').wait_for()  # pushed, no reload
    assert row(page, "n2", "p").get_by_text("pinned").count() == 1
    assert page.evaluate("sessionStorage.length") == 1 and ADMIN_KEY not in page.url


def test_a_load_shows_loading_then_ready_and_an_eviction_names_its_victim(
    page: Page, console_fleet: ConsoleFleet, tmp_path: Path
) -> None:
    sign_in(page, console_fleet)
    page.evaluate(WATCH_STATES, ["n1", "a"])
    page.get_by_label("Model to load on n1").select_option("a")
    page.get_by_role("button", name="Load on n1").click()
    row(page, "n1", "a").locator('[data-state="ready"]').wait_for()
    seen = page.evaluate("window.__seen")
    assert "loading" in seen and seen.index("loading") < seen.index("ready"), seen

    # b does not fit beside a on n1: loading it evicts a (idle since it loaded).
    console_fleet.wait(
        lambda s: any(m["id"] == "a" and m["state"] == "ready" for m in s["nodes"][0]["models"])
    )
    page.get_by_label("Model to load on n1").select_option("b")
    page.get_by_role("button", name="Load on n1").click()
    evicted = page.locator('#activity li[data-kind="evicted"][data-victim="a"]')
    evicted.wait_for()
    assert "n1" in evicted.inner_text()
    row(page, "n1", "b").locator('[data-state="ready"]').wait_for()
    row(page, "n1", "a").wait_for(state="detached")  # gone from n1 once a poll confirms it

    before = page.locator("#requests tbody tr").count()
    chat(page)  # for the picture: a request in the table and a reply in the playground
    page.locator("#requests tbody tr").nth(before).wait_for()
    playwright_api.expect(row(page, "n2", "p").locator("td").nth(1)).to_have_text("0", timeout=TIMEOUT_MS)
    refresh = os.environ.get("CORTEX_REFRESH_SCREENSHOT") == "1"
    page.screenshot(path=str(SCREENSHOT if refresh else tmp_path / "console.png"), full_page=True)


def chat(page: Page) -> None:
    page.get_by_label("Model", exact=True).select_option("p")
    page.get_by_label("Message").fill("Say hello.")
    page.get_by_label("Max tokens").fill("24")
    page.get_by_role("button", name="Send").click()
    playwright_api.expect(page.locator("#play-tokens")).to_have_text(re.compile(r"^\d+$"), timeout=TIMEOUT_MS)


def test_a_streamed_playground_chat_shows_text_and_its_ttft(page: Page, console_fleet: ConsoleFleet) -> None:
    sign_in(page, console_fleet)
    chat(page)
    assert re.fullmatch(r"\d+ ms", page.locator("#play-ttft").inner_text())
    assert page.locator("#play-output").inner_text().strip()
    assert int(page.locator("#play-tokens").inner_text()) > 0
    assert re.fullmatch(r"[\d.]+", page.locator("#play-rate").inner_text())


def test_the_page_passes_an_automated_accessibility_check(
    browser: Browser, console_fleet: ConsoleFleet
) -> None:
    from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]  # no stubs

    # axe is injected by the test, not shipped: this context alone lets scripts past the CSP.
    context = browser.new_context(bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{console_fleet.url}/console")
        page.locator("#login").wait_for(state="visible")
        login = Axe().run(page)
        assert login.violations_count == 0, login.generate_report()
        sign_in(page, console_fleet)
        page.locator("#activity").wait_for(state="attached")
        signed_in = Axe().run(page)
        assert signed_in.violations_count == 0, signed_in.generate_report()
    finally:
        context.close()
