"""Nothing local leaks: only local sources name local files, only inside their own folder, and
every URL a pack carries is http(s) (issue 14, items 4, 5 and 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hostile_helpers import BODY, ingest, rss, write_config, write_pack

from media_matrix.adapters import make_adapter
from media_matrix.adapters.base import load_image
from media_matrix.config import OutboxChannel
from media_matrix.httpclient import make_session
from media_matrix.ingest.vet import VetRules, vet_item
from media_matrix.models import Enclosure, Item
from media_matrix.render import default_templates_dir

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import PNG, make_item, make_pack  # noqa: E402

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def secret_image(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "x.png").write_bytes(PNG)
    (secret / "passwd.png").write_bytes(PNG)
    return secret


def test_remote_feed_with_file_xml_base_names_no_local_file(tmp_path, feed_server):
    secret = secret_image(tmp_path)
    body = f'<p>{BODY}<img src="passwd.png"><img src="{(secret / "x.png").as_uri()}"></p>'
    feed_server.add(
        "/feed.xml",
        body=rss([("a1", "冬季取暖防火", body)], item_extra=f'xml:base="{secret.as_uri()}/"'),
    )
    config = write_config(
        tmp_path, [{"name": "kp", "kind": "rss", "url": feed_server.url("/feed.xml")}]
    )
    report, store, _ = ingest(config, now=NOW)
    pack = store.list_packs(full=True)[0]
    assert not [i for i in pack.images if i.startswith("file:")]
    assert "file:" not in pack.content_html
    assert BODY in pack.text  # the item itself is kept
    # the relative image resolves against the feed's own http URL, not the file: base
    assert [i for i in pack.images if i.endswith("passwd.png")] == [feed_server.url("/passwd.png")]


def test_local_feed_may_name_files_beside_it_but_nothing_outside(tmp_path):
    secret = secret_image(tmp_path)
    feed_dir = tmp_path / "feed"
    (feed_dir / "media").mkdir(parents=True)
    (feed_dir / "media" / "ok.png").write_bytes(PNG)
    body = f'<p>{BODY}<img src="media/ok.png"><img src="../secret/x.png"></p>'
    feed = feed_dir / "feed.xml"
    feed.write_bytes(rss([("a1", "冬季取暖防火", body)]))
    config = write_config(tmp_path, [{"name": "kp", "kind": "rss", "url": str(feed)}])
    _, store, _ = ingest(config, now=NOW)
    pack = store.list_packs(full=True)[0]
    assert pack.images == [(feed_dir / "media" / "ok.png").as_uri()]
    assert str(secret) not in pack.content_html
    assert pack.local_root == str(feed_dir)


def packdir_errors(tmp_path, packs):
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    report, store, _ = ingest(config, now=NOW)
    return dict(report.feeds[0].item_errors), store


def test_symlinked_pack_folder_is_refused(tmp_path):
    outside = write_pack(
        tmp_path / "elsewhere", "secret-pack", body="<p>内部资料，不得外传。</p>" * 5
    )
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "innocent").symlink_to(outside, target_is_directory=True)
    errors, store = packdir_errors(tmp_path, packs)
    assert "symbolic link" in errors["innocent"]
    assert store.list_packs() == []


def test_symlinked_body_file_is_refused(tmp_path):
    (tmp_path / "secret.txt").write_text("db_password=hunter2 " * 5)
    packs = tmp_path / "packs"
    pack = write_pack(packs, "p", body="x", body_name="unused.html")
    (pack / "README.md").symlink_to(tmp_path / "secret.txt")
    errors, store = packdir_errors(tmp_path, packs)
    assert "outside the pack" in errors["p"]
    assert not [p for p in store.list_packs(full=True) if "hunter2" in p.text]


def test_body_images_outside_the_pack_are_refused(tmp_path):
    secret_image(tmp_path)
    packs = tmp_path / "packs"
    write_pack(packs, "dotdot", body=f"<p>{BODY}</p><img src='../../secret/x.png'>")
    write_pack(packs, "absolute", body=f"<p>{BODY}</p><img src='file://{tmp_path}/secret/x.png'>")
    write_pack(packs, "media", body=f"<p>{BODY}</p>", media=[f"file://{tmp_path}/secret/x.png"])
    linked = write_pack(packs, "linked", body=f"<p>{BODY}</p><img src='pic.png'>")
    (linked / "pic.png").symlink_to(tmp_path / "secret" / "x.png")
    errors, store = packdir_errors(tmp_path, packs)
    assert set(errors) == {"dotdot", "absolute", "media", "linked"}
    assert all("outside the pack" in e or "file://" in e for e in errors.values()), errors
    assert store.list_packs() == []


def test_pack_images_inside_the_pack_are_kept(tmp_path):
    packs = tmp_path / "packs"
    pack = write_pack(packs, "ok", body=f"<p>{BODY}</p><img src='img/a.png'>", media=["img/b.png"])
    (pack / "img").mkdir()
    (pack / "img" / "a.png").write_bytes(PNG)
    (pack / "img" / "b.png").write_bytes(PNG)
    errors, store = packdir_errors(tmp_path, packs)
    assert errors == {}
    stored = store.list_packs()[0]
    assert stored.images == [(pack / "img" / n).as_uri() for n in ("a.png", "b.png")]
    assert stored.local_root == str(pack.resolve())


def test_adapters_read_no_local_file_outside_the_packs_folder(tmp_path):
    secret = secret_image(tmp_path)
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "own.png").write_bytes(PNG)
    session = make_session()
    outside = (secret / "x.png").as_uri()
    assert load_image(outside, session, local_root=str(pack_dir)) is None
    assert load_image(str(secret / "x.png"), session, local_root=str(pack_dir)) is None
    assert load_image(outside, session, local_root=None) is None  # a remote source's pack
    escape = f"{pack_dir.as_uri()}/../secret/x.png"
    assert load_image(escape, session, local_root=str(pack_dir)) is None
    (pack_dir / "link.png").symlink_to(secret / "x.png")
    assert load_image((pack_dir / "link.png").as_uri(), session, local_root=str(pack_dir)) is None
    own = load_image((pack_dir / "own.png").as_uri(), session, local_root=str(pack_dir))
    assert own is not None and own.data == PNG

    # the outbox copies only the pack's own image
    channel = OutboxChannel(
        name="screen",
        type="outbox",
        county="市级",
        audience=["public"],
        slots=["0 8 * * *"],
        path=tmp_path / "outbox",
    )
    adapter = make_adapter(channel, templates_dir=default_templates_dir())
    html = f'<p>图<img src="{outside}"><img src="{(pack_dir / "own.png").as_uri()}"></p>'
    pack = make_pack(1, content_html=html, images=[outside], local_root=str(pack_dir))
    item = make_item(1, pack)
    item.scheduled_at = NOW
    adapter.send(adapter.render([item]), lambda state: None)
    manifest = json.loads((tmp_path / "outbox" / item.delivery_uid / "manifest.json").read_text())
    assert [m["source"] for m in manifest["media"]] == [(pack_dir / "own.png").as_uri()]


def test_poster_prints_no_local_file_outside_the_packs_folder(tmp_path):
    """The poster inlines the pack's image itself: the same confinement as every adapter."""
    from media_matrix.adapters.poster import PosterAdapter
    from media_matrix.config import PosterChannel

    secret = secret_image(tmp_path)
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "own.png").write_bytes(PNG)
    channel = PosterChannel(
        name="board",
        type="poster",
        county="市级",
        audience=["public"],
        slots=["0 8 * * *"],
        path=tmp_path / "posters",
    )
    adapter = make_adapter(channel, templates_dir=default_templates_dir())
    assert isinstance(adapter, PosterAdapter)
    outside = (secret / "x.png").as_uri()
    page = f'<p><img src="{outside}"><img src="{(pack_dir / "own.png").as_uri()}"></p>'
    inlined = adapter._inline_image(page, str(pack_dir))
    assert inlined.count("data:image/png;base64,") == 1
    assert "secret" not in inlined
    assert adapter._inline_image(f'<img src="{outside}">', None).count("data:") == 0


def test_every_url_a_pack_carries_is_http(tmp_path):
    packs = tmp_path / "packs"
    write_pack(packs, "js", url="javascript:alert(document.cookie)")
    write_pack(packs, "data", body=f"<p>{BODY}甲</p>", url="data:text/html,<script>x</script>")
    write_pack(packs, "ok", body=f"<p>{BODY}乙</p>", url="https://www.kepuchina.cn/a/1")
    config = write_config(tmp_path, [{"name": "local", "kind": "packdir", "url": str(packs)}])
    report, store, _ = ingest(config, now=NOW)
    urls = sorted(p.url or "" for p in store.list_packs())
    assert urls == ["", "", "https://www.kepuchina.cn/a/1"]
    warnings = dict(report.feeds[0].warnings)
    assert "javascript:" in warnings["js"] and "dropped" in warnings["js"]
    assert "data:" in warnings["data"]


def test_the_last_check_drops_local_references_of_any_remote_item(tmp_path):
    """Whatever a parser let through, vetting keeps a remote item's local references out."""
    secret = secret_image(tmp_path)
    uri = (secret / "x.png").as_uri()
    item = Item(
        guid="g",
        title="t",
        url="file:///etc/passwd",
        content_html=f'<p>正文<img src="{uri}"><a href="{uri}">下载</a></p>',
        images=[uri],
        enclosures=[Enclosure(uri, "image/png")],
    )
    notes = vet_item(item, VetRules(now=NOW))
    assert "file:" not in item.content_html and "正文" in item.content_html
    assert item.images == [] and item.enclosures == [] and item.url is None
    assert len(notes) == 4 and all("dropped" in n for n in notes)
    inside = Item(guid="h", title="t", content_html=f'<img src="{uri}">', images=[uri])
    inside.local_root = str(secret)
    assert vet_item(inside, VetRules(now=NOW)) == [] and inside.images == [uri]
