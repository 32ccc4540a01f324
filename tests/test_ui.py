"""The operator page (``/ui/``) in a real browser, and the admin API's keys.

Headless Chromium (Debian's ``chromium``, installed by ``.ci/run``) driven by
Playwright for Python; callgate runs in-process with a scripted upstream and a
webhook receiver. Every wait is on a page condition, with a timeout. The run writes
``build/call-page.png`` (README shows a copy, ``docs/call-page.png``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
from openai import AsyncOpenAI

from proxy.demo.scripted_upstream import ScriptedReply
from proxy.storage import Store, ops, views

from . import rows
from .conftest import Receiver, serve_app

ADMIN_KEY = "ops-secret-0123456789abcdef"
RUNTIME_KEY = "runtime-secret-0123456789"
AUTH = {
    "keys": [
        {"name": "ops", "key": ADMIN_KEY, "scopes": ["admin"]},
        {"name": "runtime", "key": RUNTIME_KEY, "scopes": ["relay", "calls:read", "calls:write"]},
    ]
}
FIRST = ScriptedReply(content=["Sure, ", "I can help with that. ", "What is the order number?"])
CLOSING = ScriptedReply(content=["Thanks for calling. ", '<imsagent_hangup endword="Goodbye!" outcome="resolved"/>', "(never spoken)"])
# Every run writes it under build/ (not tracked); docs/call-page.png is a copy of one.
SCREENSHOT = Path(__file__).resolve().parents[1] / "build" / "call-page.png"
WAIT_MS = 10_000


async def speak(url: str, call_id: str, text: str) -> str:
    """One streamed turn of the call, as the agent runtime sends it."""
    headers = {"X-Call-Id": call_id, "X-Caller-Number": "+4915112345567"}
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=RUNTIME_KEY, default_headers=headers, max_retries=0)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}], stream=True)
    heard = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    await client.close()
    return heard


async def test_views_filter_calls_and_see_every_change(store: Store) -> None:
    """``proxy.storage.views`` on both engines: the calls list's filters and details,
    and a fingerprint that moves with each turn, event, end, step and retry."""
    now = time.time()
    marks = [await store.read(views.fingerprint)]

    async def changed() -> None:
        marks.append(await store.read(views.fingerprint))
        assert marks[-1] != marks[-2]

    for i, key in enumerate(("old", "new")):
        start = rows.call(key, started_at=now - 100 + 50 * i)
        turn = rows.turn(f"r-{key}", started_at=now, user_text="hi" if i else "")
        await store.write(ops.begin_turn, start, turn, {"caller_number": "+4915112345567"}, now + i)
        await changed()
    await store.write(ops.finish_turn, "new", "r-new", rows.outcome(raw="Bye", spoken="Bye"), [], [], now + 2)
    await changed()
    hangup = rows.event("evt_h", "hangup", attrs={"outcome": "sold"})
    await store.write(ops.add_events, "new", [hangup], True, now + 3)
    await changed()
    ended = {"id": "evt_e", "type": "call.ended", "call_id": "new", "source": "text_command", "reason": "agent_hangup"}
    await store.write(ops.end_call, "new", ended, None, [("crm", "webhook", [])], False, now + 4)
    await changed()
    claimed, _ = await store.write(ops.claim_jobs, "me", now + 5, 30, {"crm": 1}, 10)
    await changed()
    await store.write(ops.finish_job, claimed[0].id, "me", "failed", now + 6, error="HTTP 500", output={"tags": ["crm_down"]})
    await changed()
    await store.write(ops.retry_jobs, None, now + 7)
    await changed()
    assert await store.read(views.fingerprint) == marks[-1]  # nothing changed, nothing moves

    page = await store.read(views.calls_page)
    assert [r["id"] for r in page] == ["new", "old"]
    new = page[0]
    assert (new["status"], new["end_reason"], new["spoke"], new["jobs"]) == ("ended", "agent_hangup", True, {"pending": 1})
    assert [e["type"] for e in new["events"]] == ["hangup", "call.ended"] and new["outputs"] == [{"tags": ["crm_down"]}]
    assert new["metadata"] == {"caller_number": "+4915112345567"} and not page[1]["spoke"]
    pick = [
        ({"status": "active"}, ["old"]), ({"end_reason": "agent_hangup"}, ["new"]), ({"since": now - 60}, ["new"]),
        ({"until": now - 60}, ["old"]), ({"limit": 1}, ["new"]), ({"end_reason": "idle_timeout"}, []),
    ]
    for filters, want in pick:
        assert [r["id"] for r in await store.read(views.calls_page, **filters)] == want, filters


async def test_the_admin_api_needs_a_key_with_the_admin_scope(stack: Any) -> None:
    s = await stack([FIRST], auth=AUTH)
    routes = [("GET", "/v1/admin/calls"), ("GET", "/v1/admin/calls/x"), ("GET", "/v1/admin/dead-letters"), ("GET", "/v1/admin/stream"),
              ("POST", "/v1/admin/jobs/1/retry"), ("POST", "/v1/admin/deliveries/retry"), ("POST", "/v1/admin/calls/x/sandbox")]
    async with aiohttp.ClientSession() as http:
        for method, path in routes:
            for key, status, code in ((None, 401, "invalid_api_key"), (RUNTIME_KEY, 403, "insufficient_permissions")):
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                async with http.request(method, s.url + path, headers=headers) as r:
                    body = await r.json()
                    assert (r.status, body["error"]["code"], body["error"]["type"]) == (status, code, "invalid_request_error"), path
                    assert set(body["error"]) == {"message", "type", "param", "code"}
        async with http.get(s.url + "/v1/admin/calls", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
            assert r.status == 200 and await r.json() == {"calls": []}
        async with http.get(s.url + "/ui/") as r:  # the page itself holds no data and needs no key
            assert r.status == 200 and r.content_type == "text/html" and "default-src 'self'" in r.headers["Content-Security-Policy"]
        async with http.get(s.url + "/ui/nothing.js") as r:
            assert r.status == 404


async def test_the_operator_page_follows_a_call_live_and_retries_its_failed_step(stack: Any) -> None:
    from playwright.async_api import async_playwright, expect

    assert shutil.which("chromium"), "the browser test needs Debian's chromium on PATH: apt-get install chromium (.ci/run does)"

    recv = Receiver()
    recv.script["crm"] = [500] * 50  # the CRM is down
    async with serve_app(recv.app()) as hook, async_playwright() as pw:
        step = {"name": "crm", "kind": "webhook", "url": f"{hook}/crm", "retry": {"attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.02}}
        s = await stack([FIRST, CLOSING], auth=AUTH, control={"webhook": {"url": f"{hook}/events"}}, end_function={"steps": [step]})
        browser = await pw.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(WAIT_MS)
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        try:
            await page.goto(s.url + "/ui/")
            # a wrong key is refused; the admin key opens the page
            await page.fill("#key", "not-the-key-at-all")
            await page.click("#login button")
            await expect(page.locator("#login-error")).to_contain_text("refused")
            await page.fill("#key", ADMIN_KEY)
            await page.click("#login button")
            await expect(page.locator("#live")).to_have_text("live")
            await expect(page.locator("#body")).to_contain_text("No calls match.")
            await expect(page.locator('.upstreams [data-upstream="default"] .badge')).to_have_text("ok")  # from /healthz

            # a live call appears in the list, and its turn count follows
            await speak(s.url, "ui-call-1", "Hi, I want to check on my order.")
            row = page.locator('tr.call[data-call="ui-call-1"]')
            await expect(row.locator(".badge")).to_have_text("active")
            await expect(row.locator("td.turns")).to_have_text("1")
            await expect(row).to_contain_text("+49151****567")  # masked as in the logs
            await page.select_option("select[name=status]", "ended")
            await expect(row).to_have_count(0)
            await page.select_option("select[name=status]", "active")
            await expect(row).to_have_count(1)

            # open it; the next turn streams in while it is open
            await row.locator("a").click()
            await expect(page.locator("tr.turn")).to_have_count(1)
            await expect(page.locator('tr.turn[data-turn="1"] td.said')).to_have_text("Hi, I want to check on my order.")
            heard = await speak(s.url, "ui-call-1", "No, that's all, thanks.")
            assert heard == "Thanks for calling. Goodbye!"
            turn = page.locator('tr.turn[data-turn="2"]')
            await expect(turn.locator("td.spoken")).to_have_text(heard)  # exactly what was spoken
            await expect(turn.locator("td.attempts .attempt")).to_have_class("attempt won")
            await expect(turn.locator("td.wrote mark.cmd")).to_have_text('<imsagent_hangup endword="Goodbye!" outcome="resolved"/>')
            hangup = page.locator('tr.event[data-type="hangup"]')
            await expect(hangup.locator("q.closing")).to_have_text("Goodbye!")
            await expect(page.locator('tr.event[data-type="call.ended"]')).to_contain_text("agent_hangup")
            await expect(hangup).to_contain_text("done")  # its delivery to the call layer
            await expect(page.locator("dd.end-reason")).to_have_text("agent_hangup (text_command)")
            await expect(page.locator("dl.facts")).to_contain_text("resolved")  # the tag the model wrote

            # the end function's step fails (a dead letter) ...
            crm = page.locator('tr.step[data-step="crm"]')
            await expect(crm.locator("td.status")).to_have_text("failed")
            await expect(crm).to_contain_text("HTTP 500")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            await page.click('nav a[data-view="dead"]')
            await expect(page.locator('table.dead-jobs tr.step[data-step="crm"]')).to_contain_text("ui-call-1")
            await page.go_back()

            # ... the CRM is back: retry turns it done
            recv.script["crm"].clear()
            await crm.locator("button.retry").click()
            await expect(crm.locator("td.status")).to_have_text("done")
            await expect(crm.locator("td.num").first).to_have_text("1")  # tries, counted afresh
            assert len(recv.on("crm")) == 3

            # the sandbox runs the steps on the recorded call and sends nothing
            await page.click("text=Try the end function in the sandbox")
            await page.click("main button[type=submit]")
            await expect(page.locator(".sandbox-step")).to_contain_text(f"would POST {hook}/crm")
            await expect(page.locator(".sandbox-step .badge")).to_have_text("done")
            await expect(page.locator(".sandbox-step")).to_contain_text('"Idempotency-Key": "ui-call-1:crm"')
            assert len(recv.on("crm")) == 3

            # the list's filters, through the API the page reads
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
                for query, want in (("tag=resolved&since=1h", ["ui-call-1"]), ("tag=transferred", []), ("end_reason=agent_hangup", ["ui-call-1"])):
                    async with http.get(f"{s.url}/v1/admin/calls?{query}") as r:
                        assert [c["id"] for c in (await r.json())["calls"]] == want, query

            # the key never went into a URL; it sits in this tab's session storage
            assert urls and not any(ADMIN_KEY in u for u in urls + [page.url])
            assert await page.evaluate("sessionStorage.getItem('callgate.adminKey')") == ADMIN_KEY
        finally:
            await browser.close()
