"""Nothing internal is fetched: feeds, article pages and pack images reach only public
addresses unless allow-listed, checked on the connected socket and at every redirect
(issue 14, item 6). Every server here is on loopback: the refusal is what is tested."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from feedserver import FeedServer
from hostile_helpers import BODY, REPO, ingest, rss, write_config

from media_matrix.adapters.base import load_image
from media_matrix.httpclient import (
    FetchLimits,
    FetchRefused,
    NetworkPolicy,
    guarded_get,
    make_session,
    network_policy,
)

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FEED = rss([("a1", "冬季取暖防火", f"<p>{BODY}</p>")])


@pytest.fixture
def inner():
    """A second loopback server: the "internal host" a redirect points at."""
    server = FeedServer()
    server.start()
    yield server
    server.stop()


def test_feed_on_a_private_address_is_refused_without_an_allow_list(tmp_path, feed_server):
    feed_server.add("/feed.xml", body=FEED)
    config = write_config(
        tmp_path,
        [{"name": "kp", "kind": "rss", "url": feed_server.url("/feed.xml")}],
        loopback=False,
    )
    report, store, _ = ingest(config, now=NOW)
    assert "127.0.0.1 is a loopback address" in (report.feeds[0].error or "")
    assert feed_server.hits("/feed.xml") == []  # refused before a request was sent
    assert store.list_packs() == []


def test_a_host_name_is_checked_after_resolution(tmp_path, feed_server):
    feed_server.add("/feed.xml", body=FEED)
    url = feed_server.url("/feed.xml").replace("127.0.0.1", "localhost")
    config = write_config(tmp_path, [{"name": "kp", "kind": "rss", "url": url}], loopback=False)
    report, _, _ = ingest(config, now=NOW)
    assert "loopback" in (report.feeds[0].error or "")
    assert feed_server.hits("/feed.xml") == []


def test_redirect_to_an_internal_host_is_refused(tmp_path, feed_server, inner):
    inner.add("/internal-admin", body=FEED)
    feed_server.add("/feed.xml", status=302, redirect_to=inner.url("/internal-admin"))
    port = feed_server.httpd.server_address[1]
    config = write_config(
        tmp_path,
        [{"name": "kp", "kind": "rss", "url": feed_server.url("/feed.xml")}],
        network={"allow": [f"127.0.0.1:{port}"]},  # the feed's own server only
    )
    report, store, _ = ingest(config, now=NOW)
    assert len(feed_server.hits("/feed.xml")) == 1
    assert inner.hits("/internal-admin") == []
    assert "not in network.allow" in (report.feeds[0].error or "")
    assert store.list_packs() == []


def test_redirects_are_followed_by_hand_within_the_allow_list_and_a_limit(tmp_path, feed_server):
    feed_server.add("/feed.xml", body=FEED)
    feed_server.add("/old", status=301, redirect_to="/feed.xml")
    for n in range(8):
        feed_server.add(f"/loop{n}", status=302, redirect_to=f"/loop{n + 1}")
    feed_server.add("/to-file", status=302, redirect_to="file:///etc/passwd")
    session = make_session(network=network_policy(["127.0.0.1"]))
    ok = guarded_get(session, feed_server.url("/old"), FetchLimits())
    assert ok.status == 200 and ok.url.endswith("/feed.xml") and ok.content == FEED
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        guarded_get(session, feed_server.url("/loop0"), FetchLimits())
    with pytest.raises(FetchRefused, match="only http"):
        guarded_get(session, feed_server.url("/to-file"), FetchLimits())


def test_pack_image_at_an_internal_address_is_not_fetched_at_dispatch(feed_server):
    feed_server.add("/internal-admin", body=b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    session = make_session()  # the adapter's own session: not what images go through
    url = feed_server.url("/internal-admin")
    assert load_image(url, session) is None
    assert load_image(url, session, network=NetworkPolicy()) is None
    assert feed_server.hits("/internal-admin") == []
    allowed = load_image(url, session, network=network_policy(["127.0.0.1"]))
    assert allowed is not None and len(feed_server.hits("/internal-admin")) == 1


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "non-global"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ],
)
def test_non_public_ranges_are_refused(address, kind):
    reason = NetworkPolicy().refusal(address, 80)
    assert reason is not None and kind in reason


def test_public_addresses_and_allow_list_entries_pass():
    assert NetworkPolicy().refusal("93.184.216.34", 443) is None
    assert NetworkPolicy().refusal("2606:4700::1111", 443) is None
    policy = network_policy(["10.0.0.0/8", "127.0.0.1:8080", "[::1]:9000"])
    assert policy.refusal("10.9.8.7", 80) is None
    assert policy.refusal("127.0.0.1", 8080) is None
    assert policy.refusal("127.0.0.1", 8081) is not None  # the port is part of the entry
    assert policy.refusal("::1", 9000) is None
    assert policy.refusal("::ffff:10.0.0.1", 80) is None  # mapped: judged as the IPv4 address
    assert policy.refusal("192.168.0.1", 80) is not None


def test_a_bad_allow_list_entry_is_a_config_error(tmp_path):
    config = write_config(tmp_path, [], network={"allow": ["10.0.0.0/33"]})
    done = subprocess.run(
        [sys.executable, "-m", "media_matrix", "--config", str(config), "feeds", "list"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "network.allow" in done.stderr and "10.0.0.0/33" in done.stderr
