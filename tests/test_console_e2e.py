"""The console end to end in a real headless Chromium (Debian's, driven by Playwright) against
`kabuguard serve` started here on a loopback port and fed a small simulated run.

KABUGUARD_SCREENSHOTS=DIR saves a screenshot of each page there (docs/console/ holds them)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from console_support import SECRET, WebhookReceiver, wait_for
from test_service_support import KABUGUARD, ServiceProcess, body_of, create_key, ordered_stream

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "an end to end password"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)")


class Console:
    def __init__(self, service: ServiceProcess, key: str, receiver: WebhookReceiver, shots: Path) -> None:
        self.service, self.key, self.receiver, self.shots = service, key, receiver, shots

    def post(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        answer = httpx.post(self.service.url + "/v1/events", content=body_of(events),
                            headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    run = work / "run"
    subprocess.run([KABUGUARD, "simulate", "--out", str(run), "--accounts", "120", "--days", "2",
                    "--symbols", "20", "--seed", "5", "--quiet"], check=True, capture_output=True)
    db = f"sqlite:///{work}/kg.db"
    for user, role in (("hana", "analyst"), ("aiko", "auditor")):
        subprocess.run([KABUGUARD, "users", "create", user, "--role", role, "--all-firms", "--password-stdin", "--db", db],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    receiver = WebhookReceiver()
    receiver.start()
    service = ServiceProcess(work, "memory", db, KABUGUARD_CONSOLE_SECURE_COOKIE="0",
                             KABUGUARD_WEBHOOK_URLS=receiver.url, KABUGUARD_WEBHOOK_SECRET=SECRET,
                             KABUGUARD_WEBHOOK_BACKOFF_S="0.2")
    key = create_key(db)
    service.start()
    shots = Path(os.environ.get("KABUGUARD_SCREENSHOTS") or work / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        c = Console(service, key, receiver, shots)
        stream = ordered_stream([run / "events"])
        for n in range(0, len(stream), 2000):  # in order, a batch at a time: decided as one by one
            c.post(stream[n:n + 2000])
        yield c
    finally:
        service.stop()
        receiver.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def _log_in(browser: Any, console: Console, user: str) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(console.service.url + "/console/alerts")  # no session: sent to the login page
    assert "/console/login" in page.url
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/alerts")
    return page


def _top_campaign(page: Any, console: Console) -> None:
    page.goto(console.service.url + "/console/alerts?type=campaign_alert&sort=score&order=desc")
    page.click("#alert-queue tbody tr:first-child a")
    page.wait_for_selector("#campaign-graph[data-ready=true]")


def test_analyst_contains_the_top_campaign_in_one_click_and_sees_audit_and_webhooks(browser: Any, console: Console) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(console.service.url + "/console/login")
    page.screenshot(path=str(console.shots / "login.png"))
    page = _log_in(browser, console, "hana")
    page.screenshot(path=str(console.shots / "alerts.png"), full_page=False)
    _top_campaign(page, console)
    graph = page.locator("#campaign-graph")
    assert int(graph.get_attribute("data-nodes")) > 4
    page.wait_for_selector("#campaign-market[data-ready=true] canvas")
    members = page.locator("ul.accounts li").all_inner_texts()
    assert len(members) >= 4
    page.screenshot(path=str(console.shots / "campaign.png"), full_page=True)

    page.click("#contain-alert button")  # one click
    page.wait_for_selector(".done")
    assert page.inner_text(".done") == f"contained {len(members)} accounts"
    wait_for(lambda: len(console.receiver.received) == len(members), what="a webhook per member")
    assert {r["body"]["account_id"] for r in console.receiver.received} == set(members)
    assert all(r["signed"] and r["body"]["actor"] == "hana" for r in console.receiver.received)

    page.goto(console.service.url + "/console/audit")
    audit_rows = page.locator("#audit-log tbody tr").all_inner_texts()
    contained = [r for r in audit_rows if "\tcontain\t" in r and "hana" in r]
    assert {r.split("account:")[1].split("\t")[0] for r in contained} == set(members)
    page.wait_for_function("document.querySelectorAll('#webhook-deliveries tbody tr').length > 0")
    page.reload()
    delivered = page.locator("#webhook-deliveries tbody tr").all_inner_texts()
    assert len(delivered) == len(members) and not any("pending" in r for r in delivered)
    page.screenshot(path=str(console.shots / "audit.png"))

    # The core now blocks the members: a later login is decided `block`, reason `contained`,
    # and its alert appears in the open queue without a reload.
    page.goto(console.service.url + "/console/alerts")
    page.wait_for_selector("#alert-queue tbody tr")
    answer = console.post([{"event_id": "e2e-late-login", "type": "login", "ts": "2025-04-12T09:00:00+09:00",
                            "account_id": members[0], "session_id": "s-e2e", "success": True,
                            "ip": "203.0.113.9", "device_id": "e2e-device", "user_agent": "Mozilla/5.0",
                            "mfa": "sms", "channel": "web"}])
    decision = answer["results"][0]["decision"]
    assert decision["decision"] == "block" and decision["reasons"][0] == "contained"
    page.wait_for_selector(f"#alert-queue tr.fresh:has-text('account {members[0]}')", timeout=15000)

    page.goto(f"{console.service.url}/console/accounts/acme/{members[0]}")
    assert page.locator("h1 .badge").inner_text() == "contained"
    assert page.locator("table.timeline tr:has-text('e2e-device') .new").count() >= 1
    page.screenshot(path=str(console.shots / "account.png"))

    _top_campaign(page, console)
    page.click("text=Open a case")
    page.wait_for_selector("text=case opened")
    page.fill("input[name=text]", "all members phished through the same kit")
    page.click("text=Add")
    page.wait_for_selector("text=comment added")
    page.screenshot(path=str(console.shots / "case.png"), full_page=True)

    page.goto(console.service.url + "/console/")
    page.wait_for_selector("#decisions-chart[data-ready=true] canvas")
    page.screenshot(path=str(console.shots / "dashboard.png"), full_page=True)


def test_an_auditors_attempt_to_contain_is_refused(browser: Any, console: Console) -> None:
    before = len(console.receiver.received)
    page = _log_in(browser, console, "aiko")
    _top_campaign(page, console)
    page.click("#contain-alert button")
    page.wait_for_selector("text=can read but not act")
    assert "auditor" in page.inner_text("p.error")
    page.goto(console.service.url + "/console/audit")
    assert not [r for r in page.locator("#audit-log tbody tr").all_inner_texts() if "aiko" in r and "contain" in r]
    assert len(console.receiver.received) == before
