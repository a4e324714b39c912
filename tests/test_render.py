"""Jinja2 rendering of the channel templates: escaping, outputs per type, errors with lines."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from media_matrix.config import OutboxChannel, WebhookChannel, WechatChannel, WecomChannel
from media_matrix.render import (
    DEFAULT_COVER,
    TEMPLATES,
    TemplateError,
    md_escape,
    render_message,
    shorten,
    strip_html,
)

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import TEMPLATES as TEMPLATES_DIR  # noqa: E402
from sandbox_fixtures import make_item, make_pack  # noqa: E402

WECHAT = WechatChannel(name="wx", type="wechat_mp", appid="a", secret="s", county="濮阳县")
WECOM = WecomChannel(name="wc", type="wecom_robot", webhook_url="http://x/send?key=k")
WEBHOOK = WebhookChannel(name="wh", type="webhook", url="http://x", secret="s")
OUTBOX = OutboxChannel(name="ob", type="outbox", path=Path("/tmp/ob"), window="07:00-22:00")
HOSTILE = make_pack(
    1,
    title='<script>alert("x")</script> & “科普” \\ 换行\n标题',
    summary="<b>加粗</b>摘要 & 更多",
    content_html='<p>正文 <a href="https://kepu.example">链接</a></p>',
    images=["https://img.example/a.png"],
)


def test_every_type_has_its_templates_shipped():
    for kind, names in TEMPLATES.items():
        for name in (*names["item"], *names["message"]):
            assert (TEMPLATES_DIR / kind / name).is_file(), f"{kind}/{name}"


def test_wechat_article_escapes_pack_fields_but_keeps_sanitized_html():
    message = render_message(WECHAT, [make_item(1, HOSTILE), make_item(2)], TEMPLATES_DIR)
    assert message.type == "wechat_mp" and message.channel == "wx"
    assert len(message.item_parts) == 2 and message.parts == {}
    html = message.item_parts[0]["article.html"]
    assert '<p>正文 <a href="https://kepu.example">链接</a></p>' in html  # safe on purpose
    assert "<b>" not in html and "加粗摘要 &amp; 更多" in html  # summary: text, escaped
    assert "来源: 科普中国" in html and "濮阳县科协" in html
    fields = message.fields["articles"]
    assert fields[0]["cover"] == "https://img.example/a.png"
    assert fields[1]["cover"] == DEFAULT_COVER.as_uri()
    assert fields[0]["title"] == HOSTILE.title and fields[0]["digest"] == "加粗摘要 & 更多"
    with_cover = WECHAT.model_copy(update={"cover": "/srv/cover.jpg", "author": "市科协"})
    other = render_message(with_cover, [make_item(2)], TEMPLATES_DIR).fields["articles"][0]
    assert other["cover"] == "/srv/cover.jpg" and other["author"] == "市科协"


def test_json_templates_produce_valid_json_for_hostile_text():
    webhook = render_message(WEBHOOK, [make_item(1, HOSTILE)], TEMPLATES_DIR)
    body = json.loads(webhook.parts["manuscript.json"])
    assert body["title"] == HOSTILE.title  # round-trips exactly
    assert "<script>" not in webhook.parts["manuscript.json"]  # tojson is HTML-safe
    assert body["topics"] == ["health"] and body["topic_labels"] == ["医疗健康"]
    news = json.loads(
        render_message(WECOM, [make_item(1, HOSTILE)], TEMPLATES_DIR).parts["news.json"]
    )
    article = news["news"]["articles"][0]
    assert article["title"] == HOSTILE.title and article["picurl"] == "https://img.example/a.png"
    assert article["description"] == "加粗摘要 & 更多"


def test_plain_text_outputs_are_not_html_escaped():
    message = render_message(OUTBOX, [make_item(1, HOSTILE)], TEMPLATES_DIR)
    assert "&amp;" not in message.parts["ticker.txt"] and " & " in message.parts["ticker.txt"]
    assert "&lt;script" in message.parts["article.html"]  # the page is HTML: escaped
    markdown = render_message(WECOM, [make_item(1, HOSTILE)], TEMPLATES_DIR).parts["markdown.md"]
    assert r"\<script\>" in markdown and "&amp;" not in markdown


def test_outbox_play_entry_from_config():
    item = make_item(1)
    item.scheduled_at = datetime.fromisoformat("2026-12-01T00:00:00+00:00")
    message = render_message(OUTBOX, [item], TEMPLATES_DIR)
    entry = json.loads(message.parts["playlist.json"])
    assert entry["start"] == "2026-12-01T08:00:00+08:00"  # config time zone
    assert entry["end"] == "2026-12-08T08:00:00+08:00"
    assert entry["window"] == {"from": "07:00", "to": "22:00"}
    assert message.fields["play"]["duration"] == 15


def _broken(tmp_path: Path, kind: str, name: str, text: str) -> Path:
    root = tmp_path / "channels"
    shutil.copytree(TEMPLATES_DIR, root)
    (root / kind / name).write_text(text, encoding="utf-8")
    return root


def test_undefined_name_is_an_error_with_template_and_line(tmp_path):
    root = _broken(
        tmp_path, "wechat_mp", "article.html.j2", "<p>\n{{ pack.title }}\n{{ pack.nope }}</p>\n"
    )
    with pytest.raises(TemplateError) as info:
        render_message(WECHAT, [make_item(1)], root)
    assert info.value.template == "channels/wechat_mp/article.html.j2"
    assert info.value.lineno == 3
    assert "article.html.j2, line 3" in str(info.value) and "nope" in str(info.value)


def test_syntax_error_names_the_line(tmp_path):
    root = _broken(tmp_path, "outbox", "ticker.txt.j2", "ok\n\n{{ pack.title | }}\nmore\n")
    with pytest.raises(TemplateError) as info:
        render_message(OUTBOX, [make_item(1)], root)
    assert info.value.template == "channels/outbox/ticker.txt.j2" and info.value.lineno == 3


def test_runtime_error_and_invalid_json_and_missing_template(tmp_path):
    root = _broken(tmp_path, "webhook", "manuscript.json.j2", '{"n": {{ 1 // 0 }}}')
    with pytest.raises(TemplateError, match=r"manuscript.json.j2, line 1: ZeroDivisionError"):
        render_message(WEBHOOK, [make_item(1)], root)
    root = _broken(tmp_path / "b", "webhook", "manuscript.json.j2", '{"title": {{ pack.title }}}')
    with pytest.raises(TemplateError, match="not valid JSON"):
        render_message(WEBHOOK, [make_item(1)], root)
    (root / "wecom_robot" / "markdown.md.j2").unlink()
    with pytest.raises(TemplateError, match="markdown.md.j2: not found"):
        render_message(WECOM, [make_item(1)], root)


def test_filters():
    assert strip_html("<p>一</p><p>二<script>x()</script></p>") == "一 二"
    assert shorten("一二三四五", 3) == "一二…" and shorten("短", 3) == "短"
    assert md_escape("*a* [b](c) <font>") == r"\*a\* \[b\](c) \<font\>"
    with pytest.raises(ValueError):
        render_message(WECHAT, [], TEMPLATES_DIR)


def _all_text(message) -> str:  # type: ignore[no-untyped-def]
    parts = [*message.parts.items(), *(kv for p in message.item_parts for kv in p.items())]
    return "\n".join(
        json.dumps(json.loads(v), ensure_ascii=False) if name.endswith(".json") else v
        for name, v in parts
        if isinstance(v, str)
    )


def test_an_urgent_pack_reads_as_a_warning_in_every_channel_type():
    """Templates get ``urgent``: a warning's ticker, titles and manuscripts say 【预警】, never
    【科普】; an ordinary pack never says 【预警】."""
    from media_matrix.config import PosterChannel

    poster = PosterChannel(name="p", type="poster", path=Path("/tmp/p"))
    channels = {"wechat_mp": WECHAT, "wecom_robot": WECOM, "webhook": WEBHOOK, "outbox": OUTBOX}
    channels["poster"] = poster
    assert set(channels) == set(TEMPLATES)  # every shipped channel type is checked
    for kind, channel in channels.items():
        warning = make_pack(1, title="寒潮大风预警", urgent=True)
        text = _all_text(render_message(channel, [make_item(1, warning)], TEMPLATES_DIR))
        assert "【预警】" in text, kind
        assert "【科普】" not in text, kind
        ordinary = render_message(channel, [make_item(2, make_pack(2))], TEMPLATES_DIR)
        assert "【预警】" not in _all_text(ordinary), kind
    ticker = render_message(OUTBOX, [make_item(1, make_pack(1, urgent=True))], TEMPLATES_DIR)
    assert ticker.parts["ticker.txt"].startswith("【预警】")
    manuscript = render_message(WEBHOOK, [make_item(1, make_pack(1, urgent=True))], TEMPLATES_DIR)
    assert json.loads(manuscript.parts["manuscript.json"])["urgent"] is True
