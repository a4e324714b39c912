"""The console in a real browser: an editor's and an operator's day, end to end, and a hostile
pack that must run nothing."""

from __future__ import annotations

import io
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from console_fixtures import PASSWORD
from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from media_matrix.models import Item, PackStatus
from media_matrix.timeutil import from_iso, now_iso


def sign_in(page: Page, server: str, name: str) -> None:
    page.goto(f"{server}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header.top")).to_be_visible()


def snap(page: Page, shots, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_editor_and_operator_flow(console, server, browser, shots):
    store, settings = console.store, console.settings
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page.goto(f"{server}/login")
    snap(page, shots, "00-login")
    sign_in(page, server, "admin")
    snap(page, shots, "01-dashboard")

    # find a pack by a Chinese word and open it
    page.goto(f"{server}/packs?status=new")
    page.fill("input[name=q]", "一氧化碳")
    page.click("form.filters button[type=submit]")
    results = page.locator("table.packs a[href^='/packs/']")
    expect(results.first).to_be_visible()
    assert page.locator("table.packs tr").count() - 1 == results.count() < 10
    results = results.filter(has_text="一氧化碳")
    snap(page, shots, "02-packs-search")
    results.first.click()
    pack_id = int(re.search(r"/packs/(\d+)$", page.url).group(1))
    expect(page.locator("h1")).to_contain_text("一氧化碳")
    snap(page, shots, "03-pack")

    # preview it on every channel type
    seen_types = set()
    for channel in settings.channels:
        page.goto(f"{server}/packs/{pack_id}/preview/{channel.name}")
        expect(page.locator("h1")).to_contain_text(channel.type)
        assert page.locator("section.part").count() >= 1
        seen_types.add(channel.type)
        snap(page, shots, f"04-preview-{channel.type}")
    assert seen_types >= {"wechat_mp", "wecom_robot", "webhook", "outbox"}
    wechat = page.goto(f"{server}/packs/{pack_id}/preview/puyang-kexie-wechat")
    assert wechat.ok
    expect(page.locator("iframe.preview-frame")).to_have_attribute("sandbox", "")

    # approve it with a note
    page.goto(f"{server}/packs/{pack_id}")
    page.fill("textarea[name=note]", "内容准确, 适合冬季推送")
    page.click("button[value=approve]")
    expect(page.locator(".flash.ok")).to_contain_text("已通过")
    expect(page.locator("body")).to_contain_text("内容准确, 适合冬季推送")
    assert store.get_pack(pack_id).status == "approved"
    assert store.audit_log(subject=f"pack:{pack_id}")[0]["who"] == "admin"

    # queue it into a slot on the calendar (the county media centre's CMS)
    page.click("text=排入日历…")
    page.select_option("select[name=channel]", "qingfeng-media-centre")
    page.click("form.filters button[type=submit]")
    form = page.locator("section.channel form.queue").first
    form.locator("input[name=pack_id]").fill(str(pack_id))
    first_open = form.locator("select[name=at] option").first.get_attribute("value")
    form.locator("select[name=at]").select_option(first_open)
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"内容包 {pack_id}")
    expect(page.locator("#proposals table.proposals")).to_be_visible()  # 拟排, loaded by htmx
    snap(page, shots, "05-calendar")
    booked = [d for d in store.list_deliveries(pack_id=pack_id) if d["status"] == "queued"]
    assert [d["channel"] for d in booked] == ["qingfeng-media-centre"]
    assert from_iso(booked[0]["scheduled_at"]) == from_iso(first_open)
    expect(page.locator("div.slot .item").first).to_contain_text(f"#{pack_id}")
    # the fill preview (htmx) shows what would be added before anything is written
    before = len(store.list_deliveries())
    page.click("text=预览将排入的内容")
    expect(page.locator("#fill-preview .fill")).to_be_visible()
    assert len(store.list_deliveries()) == before

    # the slot's time comes (an operator could bring it forward); a failing CMS has one too
    store.execute(
        "UPDATE deliveries SET scheduled_at = ? WHERE id = ?", (now_iso(), booked[0]["id"])
    )
    other = store.list_packs(status="approved")[0].id
    broken_id = store.queue_delivery(other, "broken-cms", scheduled_at=now_iso())

    # run a dispatch round against the sandbox
    page.goto(f"{server}/deliveries")
    page.click("text=立即投递一轮")
    expect(page.locator(".flash.ok")).to_contain_text("投递一轮")
    snap(page, shots, "06-deliveries")
    sent = store.get_delivery(booked[0]["id"])
    assert sent["status"] == "delivered", sent

    # see the delivery and its attempts
    page.goto(f"{server}/deliveries/{sent['id']}")
    expect(page.locator("h1")).to_contain_text("已送达")
    expect(page.locator("table").last).to_contain_text("送达")
    snap(page, shots, "07-delivery")

    # retry a failed one, with the confirmation
    assert store.get_delivery(broken_id)["status"] == "failed"
    page.goto(f"{server}/deliveries/{broken_id}")
    expect(page.locator("dd.err")).to_be_visible()
    snap(page, shots, "08-delivery-failed")
    retry = page.locator("form[action$='/retry']")
    retry.locator("input[name=confirm]").check()
    retry.locator("button").click()
    expect(page.locator(".flash.ok")).to_contain_text("重新排队")
    assert store.get_delivery(broken_id)["status"] == "queued"
    assert store.audit_log(subject=f"delivery:{broken_id}")[0]["who"] == "admin"

    # statistics, and the XLSX download
    page.goto(f"{server}/stats")
    expect(page.locator("h2").first).to_contain_text("覆盖率")
    charts = page.frame_locator("iframe.report")
    expect(charts.locator("svg").first).to_be_visible()
    with page.expect_download() as info:
        page.click("#download-xlsx")
    download = info.value
    assert download.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(download.path().read_bytes()))
    assert book.sheetnames
    page.locator("iframe.report").scroll_into_view_if_needed()  # painted only once on screen
    snap(page, shots, "09-stats")
    # the charts frame's own page, captured on its own as well
    page.goto(f"{server}/stats/report")
    expect(page.locator("svg").first).to_be_visible()
    snap(page, shots, "09-stats-charts")

    for name, path in (
        ("10-feeds", "/feeds"),
        ("11-status", "/status"),
        ("12-audit", "/audit"),
        ("13-users", "/users"),
    ):
        page.goto(server + path)
        snap(page, shots, name)
    page.close()


HOSTILE = (
    "<p>台风来临前的准备</p>"
    "<script>alert('script'); new Image().src = '{spy}/script'</script>"
    '<img src="https://evil.example/pixel.png" onerror="alert(\'onerror\')">'
    '<img src="{spy}/pixel.png">'
    '<a id="js" href="javascript:alert(\'link\')">点这里领取奖品</a>'
    '<iframe src="{spy}/frame"></iframe>'
    '<form action="{spy}/steal"><input name="x"></form>'
    '<style>@import url("{spy}/style.css");</style>'
    '<link rel="stylesheet" href="https://evil.example/style.css">'
    "<svg onload=\"alert('svg')\"></svg>"
    '<video src="{spy}/video.mp4" autoplay></video>'
)


class Spy(BaseHTTPRequestHandler):
    """An outside host on another loopback port: it records every request that reaches it."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Spy.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_hostile_pack_runs_nothing(console, server, browser, shots):
    spy = ThreadingHTTPServer(("127.0.0.1", 0), Spy)
    threading.Thread(target=spy.serve_forever, daemon=True).start()
    spy_url = f"http://127.0.0.1:{spy.server_address[1]}"
    item = Item(
        guid="hostile",
        title="台风防御知识 (恶意标记测试)",
        content_html=HOSTILE.replace("{spy}", spy_url),
        text="台风",
        content_hash="hostile-hash",
    )
    pack_id = console.store.insert_pack("test", item, at=now_iso(), status=PackStatus.NEW)
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    dialogs: list[str] = []
    outside: dict[str, str] = {}  # url -> how it ended
    own = urlparse(server).netloc

    def note(request, how: str) -> None:
        if (
            urlparse(request.url).scheme in ("http", "https")
            and urlparse(request.url).netloc != own
        ):
            outside[request.url] = how

    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: note(r, "started"))
    page.on("requestfailed", lambda r: note(r, f"failed: {r.failure}"))
    page.on("requestfinished", lambda r: note(r, "finished"))
    sign_in(page, server, "editor")
    try:
        for url in (
            f"/packs/{pack_id}",
            f"/packs/{pack_id}/preview/puyang-kexie-wechat",
            f"/packs/{pack_id}/preview/hualong-square-screen",
        ):
            page.goto(server + url)
            page.wait_for_load_state("networkidle")
            frames = [f for f in page.frames if f != page.main_frame]
            assert frames, "pack markup is shown in a frame"
            for frame in frames:
                link = frame.locator("a#js")
                if link.count():  # the javascript: link, clicked, runs nothing either
                    link.click(timeout=2000)
            page.wait_for_timeout(300)
        page.goto(f"{server}/packs/{pack_id}/body")  # the frame's own page, for the eye
        snap(page, shots, "14-hostile-pack")
    finally:
        spy.shutdown()
    assert dialogs == []
    assert Spy.hits == [], Spy.hits
    # the browser may log a fetch it then refuses: none may leave (blocked by the policy)
    assert all(how == "failed: csp" for how in outside.values()), outside
