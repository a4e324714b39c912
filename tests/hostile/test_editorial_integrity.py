"""Editorial integrity: nothing unreviewed goes out, no source takes over a more trusted one's
article, no date from the future jumps the queue (issue 14, items 1-3)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from hostile_helpers import BODY, KEPU_SAMPLE, ingest, rss, write_config, write_pack
from lxml import etree

from media_matrix import review
from media_matrix.cli import cli
from media_matrix.store import open_store
from media_matrix.timeutil import to_iso

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PAST = to_iso(NOW - timedelta(hours=1))


def claim(store, channel: str = "screen") -> list[int]:
    rows = store.claim_due(
        now=to_iso(NOW),
        owner="t",
        lease_until=to_iso(NOW + timedelta(minutes=5)),
        channels=[channel],
    )
    return [r["id"] for r in rows]


def test_approved_pack_changed_at_source_goes_back_to_review_with_a_diff(tmp_path):
    packs = tmp_path / "packs"
    pack = write_pack(packs, "fire", body=f"<p>{BODY}</p>")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    _, store, _ = ingest(config, now=NOW)
    pack_id = store.list_packs()[0].id
    review.approve(store, [pack_id], "张编辑")
    delivery = store.queue_delivery(pack_id, "screen", scheduled_at=PAST)

    (pack / "body.html").write_text(f"<p>{BODY}</p><p>拨打电话 400-000-0000 购买灭火器。</p>")
    report, store, _ = ingest(config, now=NOW + timedelta(minutes=10))

    assert report.feeds[0].updated == 1
    pack_now = store.get_pack(pack_id)
    assert pack_now.status == "new"  # back to review
    assert claim(store) == []  # its unstarted delivery is held, not sent
    assert store.get_delivery(delivery)["status"] == "queued"
    entry = store.audit_log(subject=f"pack:{pack_id}")[0]
    assert entry["who"] == "ingest:local" and entry["action"] == "review_again"
    assert "+拨打电话 400-000-0000 购买灭火器。" in entry["note"]  # a diff the editor can read
    assert f"暂停未开始的投递 {delivery}" in entry["note"]
    assert "购买灭火器" in store.pack_changes(pack_id)[0]["diff"]
    shown = CliRunner().invoke(cli, ["--config", str(config), "packs", "show", str(pack_id)])
    assert shown.exit_code == 0 and "+拨打电话 400-000-0000 购买灭火器。" in shown.output

    review.approve(store, [pack_id], "张编辑")  # reviewed again: the delivery may go
    assert claim(store) == [delivery]


def test_dispatch_never_claims_a_delivery_of_a_pack_that_is_not_approved(tmp_path):
    packs = tmp_path / "packs"
    write_pack(packs, "fire")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    _, store, _ = ingest(config, now=NOW)
    pack_id = store.list_packs()[0].id
    store.queue_delivery(pack_id, "screen", scheduled_at=PAST)  # queued while still new
    assert claim(store) == []


def test_auto_approve_feed_reapproves_a_changed_pack_by_its_rule(tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss([("a1", "冬季取暖防火", f"<p>{BODY}</p>")]))
    config = write_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": str(feed), "auto_approve": True}]
    )
    _, store, _ = ingest(config, now=NOW)
    pack_id = store.list_packs()[0].id
    feed.write_bytes(rss([("a1", "冬季取暖防火", f"<p>{BODY}</p><p>新增: 定期检查电线。</p>")]))
    report, store, _ = ingest(config, now=NOW + timedelta(minutes=10))
    assert report.feeds[0].updated == 1
    assert store.get_pack(pack_id).status == "approved"
    entry = store.audit_log(subject=f"pack:{pack_id}")[0]
    assert (entry["who"], entry["action"]) == ("auto:kp", "reapprove")
    assert "+新增: 定期检查电线。" in entry["note"]


def first_kepu_item() -> tuple[str, str]:
    root = etree.parse(str(KEPU_SAMPLE)).getroot()
    item = root.find("channel/item")
    return item.findtext("link").strip(), item.findtext("title").strip()


def test_a_local_pack_cannot_claim_the_trusted_article(tmp_path):
    link, title = first_kepu_item()
    feed_dir = tmp_path / "kepu"
    shutil.copytree(KEPU_SAMPLE.parent, feed_dir, ignore=shutil.ignore_patterns("packs"))
    packs = tmp_path / "packs"
    forged = "伪造的正文：本品可治愈流感，请扫码购买。" * 3
    write_pack(packs, "forged", body=f"<p>{forged}</p>", title=title, url=link)
    config = write_config(
        tmp_path,
        [
            {"name": "local", "kind": "packdir", "url": str(packs)},
            {
                "name": "kepu",
                "kind": "rss",
                "url": str(feed_dir / KEPU_SAMPLE.name),
                "trust": 10,
                "auto_approve": True,
            },
        ],
    )
    ingest(config, feeds=["local"], now=NOW)
    report, store, _ = ingest(config, feeds=["kepu"], now=NOW)

    matches = [p for p in store.list_packs(full=True) if p.url == link]
    assert len(matches) == 1
    pack = matches[0]
    assert "伪造" not in pack.text  # the trusted text won
    assert pack.status == "approved" and set(pack.feeds) == {"local", "kepu"}
    assert store.content_feed(pack.id) == "kepu"

    # the forged pack changing again does not take the article back
    write_pack(packs, "forged", body=f"<p>{forged}再次修改。</p>", title=title, url=link)
    ingest(config, feeds=["local"], now=NOW + timedelta(minutes=5))
    assert "伪造" not in store.get_pack(pack.id).text


def test_a_date_far_in_the_future_is_clamped_and_reported(tmp_path):
    feed = tmp_path / "feed.xml"
    feed.write_bytes(
        rss(
            [("a1", "冬季取暖防火", f"<p>{BODY}</p>")],
            extra="<pubDate>Fri, 31 Dec 9999 23:59:59 GMT</pubDate>",
        )
    )
    config = write_config(tmp_path, [{"name": "kp", "kind": "rss", "url": str(feed)}])
    listed = CliRunner().invoke(cli, ["--config", str(config), "ingest"], terminal_width=300)
    assert "导入时已修正的条目" in listed.output and "9999" in listed.output  # the summary
    store = open_store(tmp_path / "var" / "hostile.db")
    pack = store.list_packs()[0]
    fetched = datetime.fromisoformat(pack.fetched_at)
    assert pack.published_at == pack.fetched_at  # the fetch time, not year 9999
    assert abs(fetched - datetime.now(UTC)) < timedelta(minutes=5)
    shown = [e["error"] for e in store.item_errors("kp")]  # what `feeds list` shows
    assert len(shown) == 1 and shown[0].startswith("已修正: ") and "clamped" in shown[0]


def test_a_date_within_the_skew_is_kept(tmp_path):
    soon = NOW + timedelta(hours=6)
    feed = tmp_path / "feed.xml"
    stamp = soon.strftime("%a, %d %b %Y %H:%M:%S GMT")
    feed.write_bytes(rss([("a1", "冬季取暖防火", f"<p>{BODY}</p>")], f"<pubDate>{stamp}</pubDate>"))
    config = write_config(tmp_path, [{"name": "kp", "kind": "rss", "url": str(feed)}])
    report, store, _ = ingest(config, now=NOW)
    assert store.list_packs()[0].published_at == to_iso(soon)
    assert report.feeds[0].warnings == []
