"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven by
Selenium; nothing downloaded) against the real engine, cluster and git server.
Screenshots go to test-artifacts/dashboard/ (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import eventually
from tests.gitops.server.conftest import ADMIN_TOKEN, Dash
from tests.gitops.test_engine import deployment
from tests.manifests import WEB_SERVICE

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are not installed: .ci/run installs them")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, tmp_path: Path, name: str) -> None:
    """A screenshot in the test's tmp dir and in test-artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    shutil.copy(tmp_path / f"{name}.png", ARTIFACTS / f"{name}.png")


def wait(driver: WebDriver, cond: Callable[[WebDriver], Any], what: str, timeout: float = 90) -> Any:
    """Until `cond` holds; the live updates replace page parts, so stale elements mean "again"."""
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])
    return waiter.until(cond, f"{what} not seen in {timeout}s")


def text_of(driver: WebDriver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def test_dashboard_in_chromium(dash: Dash, browser: WebDriver, tmp_path: Path) -> None:
    repo = dash.git.repo("shop")
    first = repo.commit(
        {
            "web/deploy.yaml": deployment("nginx:1.25"),
            "web/svc.yaml": WEB_SERVICE,
            "other/deploy.yaml": deployment("redis:7", replicas=1, name="cache"),
        },
        "first release",
    )
    dash.create_app("shop", repo, "web")
    dash.create_app("other", repo, "other", automated=False)
    eventually(lambda: dash.status("shop") == ("Synced", "Healthy", first), 90, "shop Synced+Healthy")
    eventually(lambda: dash.status("other")[0] == "OutOfSync", 60, "other compared")

    # Log in; the list shows both apps with their statuses.
    browser.get(dash.url + "/")
    wait(browser, lambda d: "/login" in d.current_url, "the login page")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-key="default/shop"]'), "the app list")
    shop_row, other_row = 'tr[data-key="default/shop"]', 'tr[data-key="default/other"]'
    assert text_of(browser, f"{shop_row} [data-f=syncStatus]") == "Synced"
    assert text_of(browser, f"{shop_row} [data-f=healthStatus]") == "Healthy"
    assert text_of(browser, f"{shop_row} [data-f=shortRevision]") == first[:7]
    assert text_of(browser, f"{other_row} [data-f=syncStatus]") == "OutOfSync"
    assert text_of(browser, f"{other_row} [data-f=healthStatus]") == "Missing"
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "live", "live feed")
    shot(browser, tmp_path, "01-list")

    # A push and a refresh turn the row to the new revision without a reload.
    browser.execute_script("window.__sameDocument = 'yes'")
    second = repo.commit({"web/deploy.yaml": deployment("nginx:1.26")}, "bump nginx")
    assert dash.api("POST", "/api/v1/applications/default/shop/refresh").status_code == 202
    wait(browser, lambda d: text_of(d, f"{shop_row} [data-f=shortRevision]") == second[:7], "the new revision")
    wait(browser, lambda d: text_of(d, f"{shop_row} [data-f=commitMessage]") == "bump nginx", "the commit message")
    assert browser.execute_script("return window.__sameDocument") == "yes"
    shot(browser, tmp_path, "02-list-after-push")

    # The app page shows the tree down to the pods, with phase and restarts.
    browser.find_element(By.LINK_TEXT, "shop").click()

    def running_pods(d: WebDriver) -> list[list[str]] | None:
        """(phase, restarts) of every pod row, read in one go (live updates replace rows)."""
        cells: list[list[str]] = d.execute_script(
            "return [...document.querySelectorAll('tr[data-kind=Pod]')]"
            ".map(r => [r.querySelector('.pod-phase').textContent, r.querySelector('.restarts').textContent])"
        )
        return cells if [phase for phase, _ in cells] == ["Running", "Running"] else None

    try:
        rows = wait(browser, running_pods, "two running pods")
    finally:
        shot(browser, tmp_path, "03-app-tree")
    assert rows == [["Running", "0"], ["Running", "0"]]
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-kind="ReplicaSet"]')
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-kind="Service"]')

    # Sync works for the logged-in admin, from the manual app's page.
    browser.get(dash.url + "/apps/default/other")
    browser.find_element(By.ID, "sync").click()
    wait(browser, lambda d: "sync requested by admin" in text_of(d, ".flash"), "the sync confirmation")
    wait(browser, lambda d: text_of(d, "#op-phase") == "Succeeded", "the sync to finish on the page")
    eventually(lambda: dash.status("other")[0] == "Synced", 60, "other synced")
    shot(browser, tmp_path, "04-synced")

    # A change in git: Refresh, then the diff view shows it.
    repo.commit({"other/deploy.yaml": deployment("redis:7.2", replicas=1, name="cache")}, "redis 7.2")
    browser.find_element(By.ID, "refresh").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#live .sync-OutOfSync"), "OutOfSync on the app page")
    browser.find_element(By.ID, "diff-link").click()
    section = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'section[data-kind="Deployment"]'), "diff")
    diff = section[0].find_element(By.CSS_SELECTOR, "pre.diff").text
    assert "-      - image: redis:7\n" in diff and "+      - image: redis:7.2\n" in diff, diff
    assert section[0].find_elements(By.CSS_SELECTOR, "span.add") and section[0].find_elements(
        By.CSS_SELECTOR, "span.del"
    )
    shot(browser, tmp_path, "05-diff")

    # Refused without the CSRF token (session only), and without a session at all.
    post = (
        "const done = arguments[arguments.length - 1];"
        "fetch('/apps/default/other/sync', {method: 'POST', redirect: 'manual'}).then(r => done(r.status));"
    )
    assert browser.execute_async_script(post) == 403
    browser.delete_all_cookies()
    assert browser.execute_async_script(post) == 401
    assert "operation" not in dash.client.get("gitops.dev/v1alpha1", "Application", "other", "default")

    # Polling fallback (as behind a buffering proxy): the list still follows changes.
    browser.get(dash.url + "/login")
    browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, shop_row), "the app list again")
    browser.get(dash.url + "/?live=poll")
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "polling", "polling")
    third = repo.commit({"web/deploy.yaml": deployment("nginx:1.27")}, "nginx 1.27")
    assert dash.api("POST", "/api/v1/applications/default/shop/refresh").status_code == 202
    wait(browser, lambda d: text_of(d, f"{shop_row} [data-f=shortRevision]") == third[:7], "polled revision")
    shot(browser, tmp_path, "06-list-polling")
