"""The sandbox servers answer like the real services, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
import requests

from media_matrix.sandbox import (
    Faults,
    MediaCentreSandbox,
    SandboxServers,
    WechatSandbox,
    WecomSandbox,
)
from media_matrix.sandbox.mediacentre import signature

pytest.register_assert_rewrite("sandbox_fixtures")
from sandbox_fixtures import GIF, JPEG, PNG  # noqa: E402

pytest_plugins = ("sandbox_fixtures",)

APPID, SECRET = "wx-sandbox-appid", "sandbox-secret"


def stable(base: str, force: bool = False, **over: str) -> dict:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, **over}
    body["force_refresh"] = force
    return requests.post(f"{base}/cgi-bin/stable_token", json=body, timeout=5).json()


def plain_token(base: str, **over: str) -> dict:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, **over}
    return requests.get(f"{base}/cgi-bin/token", params=params, timeout=5).json()


def api(base: str, endpoint: str, token: str, body: dict | None = None, **params: str) -> dict:
    return requests.post(
        f"{base}/cgi-bin/{endpoint}",
        params={"access_token": token, **params},
        json=body or {},
        timeout=5,
    ).json()


def upload(base: str, token: str, data: bytes, endpoint: str = "media/uploadimg", **params):
    return requests.post(
        f"{base}/cgi-bin/{endpoint}",
        params={"access_token": token, **params},
        files={"media": ("x.bin", data, "application/octet-stream")},
        timeout=5,
    ).json()


# -- WeChat: tokens -----------------------------------------------------------------------------


def test_token_endpoint_invalidates_the_previous_token(servers):
    base = servers.urls["wechat"]
    first = plain_token(base)["access_token"]
    assert api(base, "draft/get", first, {"media_id": "x"})["errcode"] == 40007  # token fine
    second = plain_token(base)["access_token"]
    assert second != first
    assert api(base, "draft/get", first, {"media_id": "x"})["errcode"] == 40001
    assert api(base, "draft/get", second, {"media_id": "x"})["errcode"] == 40007


def test_stable_token_is_stable_until_force_refresh(servers):
    base = servers.urls["wechat"]
    a, b = stable(base), stable(base)
    assert a["access_token"] == b["access_token"] and 0 < b["expires_in"] <= 7200
    forced = stable(base, force=True)["access_token"]
    assert forced != a["access_token"]
    assert api(base, "draft/get", a["access_token"], {"media_id": "x"})["errcode"] == 40001
    # the two token families are isolated: a cgi-bin/token does not touch the stable one
    plain_token(base)
    assert api(base, "draft/get", forced, {"media_id": "x"})["errcode"] == 40007


def test_tokens_expire_and_bad_credentials_are_named():
    with SandboxServers(wechat=WechatSandbox(token_lifetime=60)) as sb:
        base = sb.urls["wechat"]
        token = stable(base)["access_token"]
        sb.wechat.advance(61)
        assert api(base, "draft/get", token, {"media_id": "x"})["errcode"] == 42001
        assert stable(base)["access_token"] != token  # a new one once expired
        assert api(base, "draft/get", "garbage", {})["errcode"] == 40014
        assert (
            requests.post(f"{base}/cgi-bin/draft/get", json={}, timeout=5).json()["errcode"]
            == 41001
        )
        assert stable(base, appid="wx-nope")["errcode"] == 40013
        assert stable(base, secret="wrong")["errcode"] == 40125
        assert plain_token(base, grant_type="password")["errcode"] == 40002


def test_stable_token_renews_early_and_can_be_switched_off():
    with SandboxServers(wechat=WechatSandbox(token_lifetime=100)) as sb:
        base = sb.urls["wechat"]
        old = stable(base)["access_token"]
        sb.wechat.advance(85)  # within the last fifth: normal mode hands out the next one
        new = stable(base)
        assert new["access_token"] != old and new["expires_in"] == 100
        assert api(base, "draft/get", old, {"media_id": "x"})["errcode"] == 40007  # still valid
    with SandboxServers(wechat=WechatSandbox(stable_token_enabled=False)) as sb:
        resp = requests.post(f"{sb.urls['wechat']}/cgi-bin/stable_token", json={}, timeout=5)
        assert resp.status_code == 404


# -- WeChat: materials, drafts, limits ---------------------------------------------------------


def test_uploads_check_type_and_size(servers):
    base = servers.urls["wechat"]
    token = stable(base)["access_token"]
    url = upload(base, token, PNG)["url"]
    assert url.startswith(base + "/mmbiz/")
    assert requests.get(url, timeout=5).content == PNG
    assert upload(base, token, GIF)["errcode"] == 40005  # uploadimg: jpg/png only
    assert upload(base, token, b"\x89PNG\r\n\x1a\n" + b"0" * (1024 * 1024))["errcode"] == 40009
    thumb = upload(base, token, JPEG, "material/add_material", type="thumb")
    assert thumb["media_id"].startswith("MAT_")
    assert upload(base, token, PNG, "material/add_material", type="thumb")["errcode"] == 40005
    assert upload(base, token, GIF, "material/add_material", type="image")["media_id"]
    assert upload(base, token, PNG, "material/add_material", type="nope")["errcode"] == 40004


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        ({"title": "题" * 33}, 45003),
        ({"author": "作" * 17}, 45110),
        ({"digest": "摘" * 129}, 45004),
        ({"content": "x" * 20000}, 45002),
        ({"content_source_url": "https://e.example/" + "a" * 1024}, 45005),
        ({"thumb_media_id": "MAT_unknown"}, 40007),
        ({"title": ""}, 44003),
    ],
)
def test_draft_field_limits_answer_real_errcodes(servers, change, errcode):
    base = servers.urls["wechat"]
    token = stable(base)["access_token"]
    thumb = upload(base, token, PNG, "material/add_material", type="image")["media_id"]
    article = {"title": "标题", "content": "<p>正文</p>", "thumb_media_id": thumb, **change}
    assert api(base, "draft/add", token, {"articles": [article]})["errcode"] == errcode


def test_draft_bundles_at_most_eight_and_drops_external_images(servers):
    base = servers.urls["wechat"]
    token = stable(base)["access_token"]
    thumb = upload(base, token, PNG, "material/add_material", type="image")["media_id"]
    own = upload(base, token, PNG)["url"]
    art = {
        "title": "标题",
        "content": f'<p><img src="{own}"><img src="https://evil.example/x.png"></p>',
        "thumb_media_id": thumb,
    }
    assert api(base, "draft/add", token, {"articles": [art] * 9})["errcode"] == 45008
    media_id = api(base, "draft/add", token, {"articles": [art] * 8})["media_id"]
    draft = servers.wechat.drafts[media_id]
    assert draft["dropped_images"] == 8
    assert "evil.example" not in draft["articles"][0]["content"]
    assert own in draft["articles"][0]["content"]
    assert len(api(base, "draft/get", token, {"media_id": media_id})["news_item"]) == 8


def _draft(base: str, token: str, title: str = "标题") -> str:
    thumb = upload(base, token, PNG, "material/add_material", type="image")["media_id"]
    art = {"title": title, "content": "<p>正文</p>", "thumb_media_id": thumb}
    return api(base, "draft/add", token, {"articles": [art]})["media_id"]


def test_publish_stays_publishing_then_succeeds_or_fails():
    with SandboxServers(wechat=WechatSandbox(publish_polls=2)) as sb:
        base = sb.urls["wechat"]
        token = stable(base)["access_token"]
        sb.wechat.queue_outcomes(0, 4)
        ok = api(base, "freepublish/submit", token, {"media_id": _draft(base, token)})
        bad = api(base, "freepublish/submit", token, {"media_id": _draft(base, token, "坏")})
        assert ok["errcode"] == 0 and ok["publish_id"] and ok["msg_data_id"]
        seen = [
            api(base, "freepublish/get", token, {"publish_id": ok["publish_id"]}) for _ in range(3)
        ]
        assert [s["publish_status"] for s in seen] == [1, 1, 0]
        item = seen[-1]["article_detail"]["item"][0]
        assert item["idx"] == 1 and item["article_url"].startswith(base + "/s/")
        assert "正文" in requests.get(item["article_url"], timeout=5).text
        statuses = [
            api(base, "freepublish/get", token, {"publish_id": bad["publish_id"]}) for _ in range(3)
        ]
        assert statuses[-1]["publish_status"] == 4 and statuses[-1]["fail_idx"] == [1]
        assert sb.wechat.published_titles == ["标题"]
        # the draft left the box: submitting it again is refused
        assert (
            api(base, "freepublish/submit", token, {"media_id": ok["publish_id"]})["errcode"]
            == 40007
        )
        listed = api(base, "freepublish/batchget", token, {"offset": 0, "count": 20})
        assert listed["total_count"] == 1


def test_mass_send_daily_limit_and_clientmsgid_dedupe():
    with SandboxServers(wechat=WechatSandbox(mass_daily_limit=1)) as sb:
        base = sb.urls["wechat"]
        token = stable(base)["access_token"]

        def sendall(media_id: str, client: str) -> dict:
            body = {
                "filter": {"is_to_all": True},
                "mpnews": {"media_id": media_id},
                "msgtype": "mpnews",
                "clientmsgid": client,
            }
            return api(base, "message/mass/sendall", token, body)

        first = sendall(_draft(base, token), "c1")
        assert first["errcode"] == 0 and first["msg_id"]
        again = sendall(_draft(base, token), "c1")
        assert again["errcode"] == 45065 and again["msg_id"] == first["msg_id"]
        assert sendall(_draft(base, token), "c2")["errcode"] == 45028
        sb.wechat.advance(86400)
        token = stable(base)["access_token"]  # the old one expired meanwhile
        assert sendall(_draft(base, token), "c3")["errcode"] == 0
        assert len(sb.wechat.mass) == 2


def test_daily_and_minute_api_quotas():
    wechat = WechatSandbox(
        api_daily_limits={"draft/get": 2}, api_minute_limits={"media/uploadimg": 1}
    )
    with SandboxServers(wechat=wechat) as sb:
        base = sb.urls["wechat"]
        token = stable(base)["access_token"]
        codes = [api(base, "draft/get", token, {"media_id": "x"})["errcode"] for _ in range(3)]
        assert codes == [40007, 40007, 45009]
        assert "url" in upload(base, token, PNG)
        assert upload(base, token, PNG)["errcode"] == 45011
        sb.wechat.advance(60)
        assert "url" in upload(base, token, PNG)


def test_datacube_reads_are_deterministic_and_dates_enforced():
    wechat = WechatSandbox(publish_polls=0, followers=10000, token_lifetime=30 * 86400)
    with SandboxServers(wechat=wechat) as sb:
        base = sb.urls["wechat"]
        token = stable(base)["access_token"]
        pub = api(base, "freepublish/submit", token, {"media_id": _draft(base, token)})
        api(base, "freepublish/get", token, {"publish_id": pub["publish_id"]})
        day = sb.wechat.today()

        def cube(endpoint: str, begin, end) -> dict:
            body = {"begin_date": str(begin), "end_date": str(end)}
            return requests.post(
                f"{base}/datacube/{endpoint}",
                params={"access_token": token},
                json=body,
                timeout=5,
            ).json()

        assert cube("getarticlesummary", day, day)["errcode"] == 61501  # today is not over
        assert cube("getarticlesummary", "2026/11/01", "x")["errcode"] == 61500
        sb.wechat.advance(3 * 86400)
        assert cube("getarticletotaldetail", day, day + timedelta(days=1))["errcode"] == 61501
        summary = cube("getarticlesummary", day, day)["list"]
        assert len(summary) == 1 and summary[0]["msgid"] == f"{pub['msg_data_id']}_1"
        assert summary[0]["int_page_read_count"] > 0 and summary[0]["share_count"] >= 0
        detail = cube("getarticletotaldetail", day, day)
        assert detail["is_delay"] is False
        rows = detail["list"][0]["detail_list"]
        assert [r["stat_date"] for r in rows][0] == str(day) and len(rows) == 3
        assert rows[-1]["read_user"] >= rows[0]["read_user"] > 0  # cumulative
        assert cube("getarticletotaldetail", day, day) == detail  # deterministic


# -- WeCom ---------------------------------------------------------------------------------------


def test_wecom_twenty_a_minute_per_key_then_45009(servers):
    text = {"msgtype": "text", "text": {"content": "你好"}}
    codes = [
        requests.post(servers.wecom.url("k1"), json=text, timeout=5).json()["errcode"]
        for _ in range(21)
    ]
    assert codes == [0] * 20 + [45009]
    assert requests.post(servers.wecom.url("k2"), json=text, timeout=5).json()["errcode"] == 0
    servers.wecom.advance(60)
    assert requests.post(servers.wecom.url("k1"), json=text, timeout=5).json()["errcode"] == 0
    assert len(servers.wecom.accepted("k1")) == 21


@pytest.mark.parametrize(
    ("payload", "errcode"),
    [
        ({"msgtype": "video", "video": {}}, 40008),
        ({"msgtype": "text", "text": {"content": " "}}, 44004),
        ({"msgtype": "text", "text": {"content": "字" * 683}}, 40058),  # 2049 bytes
        ({"msgtype": "markdown", "markdown": {"content": "a" * 4097}}, 40058),
        ({"msgtype": "news", "news": {"articles": []}}, 40058),
        ({"msgtype": "news", "news": {"articles": [{"title": "t", "url": "u"}] * 9}}, 40058),
        (
            {"msgtype": "news", "news": {"articles": [{"title": "题" * 43, "url": "http://a"}]}},
            40058,
        ),
        ({"msgtype": "news", "news": {"articles": [{"title": "t"}]}}, 40058),
    ],
)
def test_wecom_validates_payloads(servers, payload, errcode):
    resp = requests.post(servers.wecom.url("k"), json=payload, timeout=5).json()
    assert resp["errcode"] == errcode
    assert servers.wecom.messages == []


def test_wecom_accepts_news_markdown_image_and_checks_the_key():
    with SandboxServers(wecom=WecomSandbox(keys={"good"})) as sb:
        news = {
            "msgtype": "news",
            "news": {"articles": [{"title": "标题", "url": "https://e.example", "picurl": ""}]},
        }
        assert requests.post(sb.wecom.url("good"), json=news, timeout=5).json()["errcode"] == 0
        md = {"msgtype": "markdown", "markdown": {"content": "### 标题"}}
        assert requests.post(sb.wecom.url("good"), json=md, timeout=5).json()["errcode"] == 0
        image = {
            "msgtype": "image",
            "image": {
                "base64": base64.b64encode(PNG).decode(),
                "md5": hashlib.md5(PNG).hexdigest(),
            },
        }
        assert requests.post(sb.wecom.url("good"), json=image, timeout=5).json()["errcode"] == 0
        assert requests.post(sb.wecom.url("bad"), json=md, timeout=5).json()["errcode"] == 93000


# -- media centre -------------------------------------------------------------------------------


def _post(url, body, key, secret="sandbox-secret", ts=None, nonce=None, timeout=5.0):
    ts = str(int(time.time()) if ts is None else ts)
    nonce = nonce or os.urandom(8).hex()
    headers = {
        "X-MM-Timestamp": ts,
        "X-MM-Nonce": nonce,
        "X-MM-Signature": signature(secret, ts, nonce, body),
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def test_mediacentre_verifies_signatures(servers):
    url = servers.mediacentre.url()
    body = json.dumps({"title": "标题"}).encode()
    assert _post(url, body, "k", secret="wrong").status_code == 401
    assert _post(url, body, "k", ts=int(time.time()) - 301).status_code == 401
    assert _post(url, body, "k", ts="soon").status_code == 401
    assert requests.post(url, data=body, timeout=5).status_code == 401
    ok = _post(url, body, "k", nonce="n1")
    assert ok.status_code == 201
    assert _post(url, body, "k2", nonce="n1").status_code == 401  # replayed nonce
    reasons = [r for _, r in servers.mediacentre.rejections]
    assert reasons == [
        "bad signature",
        "stale timestamp",
        "bad timestamp",
        "missing signature headers",
        "replayed nonce",
    ]


def test_mediacentre_dedupes_idempotency_keys(servers):
    url = servers.mediacentre.url()
    body = json.dumps({"title": "标题"}).encode()
    first = _post(url, body, "delivery-1")
    again = _post(url, json.dumps({"title": "changed"}).encode(), "delivery-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(servers.mediacentre.manuscripts) == 1
    assert servers.mediacentre.hits["delivery-1"] == 2
    assert requests.get(first.json()["url"], timeout=5).status_code == 200
    assert _post(url, json.dumps({"summary": "x"}).encode(), "d2").status_code == 422
    assert _post(url, b"[1]", "d3").status_code == 400
    assert _post(url, body, "").status_code == 400


def test_mediacentre_secrets_per_path():
    app = MediaCentreSandbox(secrets={"/cms/a/manuscripts": "sa"})
    with SandboxServers(mediacentre=app) as sb:
        body = b'{"title": "t"}'
        assert _post(sb.mediacentre.url("/cms/a/manuscripts"), body, "k", "sa").status_code == 201
        assert _post(sb.mediacentre.url("/cms/b/manuscripts"), body, "k", "sa").status_code == 401


# -- faults and lifecycle -----------------------------------------------------------------------


def test_forced_failures_latency_and_hangs(servers):
    url = servers.mediacentre.url()
    body = b'{"title": "t"}'
    servers.mediacentre.faults.fail_next(2, status=503, retry_after="3")
    first = _post(url, body, "k")
    assert first.status_code == 503 and first.headers["Retry-After"] == "3"
    assert _post(url, body, "k").status_code == 503
    assert _post(url, body, "k").status_code == 201
    servers.mediacentre.faults.hang_next(1, seconds=2.0, after=True)
    with pytest.raises(requests.ReadTimeout):
        _post(url, body, "k-hang", timeout=0.3)
    assert "k-hang" in servers.mediacentre.manuscripts  # acted, answer lost
    servers.mediacentre.faults.latency = 0.2
    started = time.monotonic()
    assert _post(url, body, "k3").status_code == 201
    assert time.monotonic() - started >= 0.2
    servers.wechat.faults.fail_next(1, errcode=-1)
    assert stable(servers.urls["wechat"])["errcode"] == -1


def _failures(seed: int) -> list[int]:
    app = WecomSandbox(faults=Faults(error_rate=0.3, seed=seed))
    with SandboxServers(wecom=app) as sb:
        text = {"msgtype": "text", "text": {"content": "x"}}
        return [
            requests.post(sb.wecom.url(f"k{i}"), json=text, timeout=5).status_code
            for i in range(20)
        ]


def test_error_rate_is_seeded():
    run = _failures(7)
    assert run == _failures(7)
    assert 0 < run.count(503) < 20


def _free_base_port() -> int:
    for _ in range(20):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 30000
        socks = []
        try:
            for offset in range(3):
                s = socket.socket()
                s.bind(("127.0.0.1", base + offset))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no free port range")


def test_base_port_and_stop():
    base = _free_base_port()
    sb = SandboxServers(port=base).start()
    try:
        assert sb.urls == {
            "wechat": f"http://127.0.0.1:{base}",
            "wecom": f"http://127.0.0.1:{base + 1}",
            "mediacentre": f"http://127.0.0.1:{base + 2}",
        }
        sb.mediacentre.faults.hang_next(1, seconds=30)
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            requests.get(sb.urls["mediacentre"] + "/x", timeout=0.2)
    finally:
        sb.stop()
    assert time.monotonic() - started < 5  # a hanging handler does not hold up stop()
    assert sb.urls == {}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{base}/cgi-bin/token", timeout=1)


def test_cli_sandbox_command_runs_until_sigterm(tmp_path):
    script = textwrap.dedent(
        """
        import click
        from media_matrix.cli import sandbox

        @click.group()
        def cli():
            pass

        sandbox.register(cli)
        cli()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        urls = dict(line.split()[:2] for line in lines)
        assert set(urls) == {"wechat", "wecom", "mediacentre"}
        token = requests.post(
            urls["wechat"] + "/cgi-bin/stable_token",
            json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
            timeout=5,
        ).json()
        assert token["access_token"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
