"""/officers in a real browser: an editor opens the roster from the nav bar, uploads a roster
CSV, and disables an officer with the keyboard only (confirmation checkbox, then the button);
the page shows the officer as disabled and the audit names the editor."""

from __future__ import annotations

from playwright.sync_api import expect
from test_console_browser import sign_in, snap

ROSTER = "姓名,区县,乡镇,人群\n浏览器甲,清丰县,韩村镇,农民\n浏览器乙,范县,濮城镇,老年人;青少年\n"


def test_editor_imports_a_roster_and_disables_an_officer(console, server, browser, shots, tmp_path):
    csv = tmp_path / "名册.csv"
    csv.write_text(ROSTER, encoding="utf-8")
    page = browser.new_page(locale="zh-CN")
    sign_in(page, server, "editor")
    page.click("header.top nav >> text=信息员")
    expect(page.locator("h1")).to_contain_text("科普信息员")
    page.set_input_files("input[name=roster]", str(csv))
    page.fill("input[name=note]", "浏览器导入")
    page.click("form.box button[type=submit]")
    expect(page.locator(".flash.ok")).to_contain_text("新增 2")
    expect(page.locator("#officers")).to_contain_text("浏览器乙")
    snap(page, shots, "officers")

    page.click("#officers >> text=浏览器甲")
    expect(page.locator("h1")).to_contain_text("浏览器甲")
    page.focus("input[name=note]")
    page.keyboard.type("离岗")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # the confirmation checkbox
    expect(page.locator("input[name=confirm]")).to_be_checked()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # 停用信息员
    expect(page.locator(".flash.ok")).to_contain_text("已停用信息员 浏览器甲")
    expect(page.locator("dl.facts")).to_contain_text("已停用")
    snap(page, shots, "officer-disabled")
    page.close()

    officer = next(o for o in console.store.list_officers() if o["name"] == "浏览器甲")
    assert officer["disabled"]
    audit = console.store.audit_log(subject=f"officer:{officer['id']}")
    assert [(a["who"], a["action"], a["note"]) for a in audit] == [
        ("editor", "officer.disable", "离岗")
    ]
