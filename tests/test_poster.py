"""The poster channel (print-ready PDF, CJK text extractable, fonts embedded, QR decodable to the
tracked link) and the screen playlist's QR image, both through the real dispatcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader

from media_matrix.adapters.poster import print_pdf
from media_matrix.dispatch import dispatch_due
from media_matrix.render import DEFAULT_COVER
from media_matrix.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from test_dispatch import add_packs, outbox, queue  # noqa: E402
from test_public import write_config  # noqa: E402


def decode_qr(image_path: Path) -> list[str]:
    with Image.open(image_path) as image:
        return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


def rasterise(pdf: Path, out: Path, dpi: int = 110) -> Path:
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(dpi), "-singlefile", str(pdf), str(out)],
        check=True,
        timeout=60,
    )
    return out.with_suffix(".png")


def poster(name: str, path: Path, **extra: object) -> dict[str, object]:
    return {"name": name, "type": "poster", "path": str(path), "county": "清丰县", **extra}


@pytest.fixture
def printed(tmp_path):
    settings = write_config(
        tmp_path,
        [poster("board", tmp_path / "posters"), poster("big", tmp_path / "a3", paper="A3")],
    )
    store = open_store(settings.database)
    packs = add_packs(store, 2)
    pack_folder = tmp_path / "pack-1"  # a local pack's image, read only inside its own folder
    pack_folder.mkdir()
    image = pack_folder / "cover.png"
    image.write_bytes(DEFAULT_COVER.read_bytes())
    store.execute(
        "UPDATE packs SET images = ?, local_root = ?, text = ? WHERE id = ?",
        (
            json.dumps([image.as_uri()]),
            str(pack_folder),
            "流感是由流感病毒引起的急性呼吸道传染病。接种流感疫苗是预防流感最有效的手段。"
            "勤洗手、多通风，咳嗽时用纸巾遮住口鼻。出现发热症状要及时就医。",
            packs[0],
        ),
    )
    (a4,) = queue(store, packs[:1], "board")
    (a3,) = queue(store, packs[1:], "big")
    report = dispatch_due(settings, store)
    assert report.delivered == 2, report.errors
    yield settings, store, a4, a3
    store.close()


def _file(store, delivery_id: int) -> Path:
    (row,) = store.list_deliveries(ids=[delivery_id])
    assert row["status"] == "delivered" and row["url"].startswith("file://")
    return Path(row["url"].removeprefix("file://"))


def test_poster_pdf_has_its_text_fonts_and_a_qr_code_of_the_tracked_link(printed, tmp_path):
    settings, store, a4, _ = printed
    pdf = _file(store, a4)
    assert pdf.suffix == ".pdf" and pdf.parent == tmp_path / "posters"
    assert not list(pdf.parent.glob(".tmp-*"))  # written atomically, nothing left over
    reader = PdfReader(pdf)
    assert len(reader.pages) == 1
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (595, 842)  # A4 portrait, points
    text = "".join(reader.pages[0].extract_text().split())
    title = store.list_packs(ids=[store.list_deliveries(ids=[a4])[0]["pack_id"]])[0].title
    for expected in (title, "流感高发季节", "接种流感疫苗是预防流感最有效的手段", "来源：科普中国"):
        assert "".join(expected.split()) in text, expected
    fonts = [
        font.get_object() for page in reader.pages for font in page["/Resources"]["/Font"].values()
    ]
    assert any("WenQuanYi" in str(f["/BaseFont"]) for f in fonts)  # the CJK face
    descriptors = [
        f.get("/FontDescriptor") or f["/DescendantFonts"][0]["/FontDescriptor"] for f in fonts
    ]
    assert all(
        any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3")) for d in descriptors
    )  # embedded, not referenced
    (link,) = store.links_of(delivery_id=a4)
    track = f"https://kp.example.cn/s/{link['code']}"
    assert track in text.replace(" ", "")
    assert decode_qr(rasterise(pdf, tmp_path / "page")) == [track]
    assert b"/Subtype /Image" in pdf.read_bytes() or b"/Subtype/Image" in pdf.read_bytes()


def test_a3_poster_and_sending_again_rewrites_nothing(printed, tmp_path):
    settings, store, a4, a3 = printed
    pdf = _file(store, a3)
    reader = PdfReader(pdf)
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (842, 1191)
    (link,) = store.links_of(delivery_id=a3)
    assert decode_qr(rasterise(pdf, tmp_path / "a3", dpi=60)) == [
        f"https://kp.example.cn/s/{link['code']}"
    ]
    before = pdf.stat().st_mtime_ns
    from media_matrix.adapters import make_adapter
    from media_matrix.adapters.base import OutgoingItem

    adapter = make_adapter(settings.channel("big"), templates_dir=settings.templates)
    row = store.list_deliveries(ids=[a3])[0]
    item = OutgoingItem(row["id"], row["uid"], store.get_pack(row["pack_id"]))
    result = adapter.send(adapter.render([item]), lambda state: None)
    assert result.state == {"file": str(pdf), "written": False}
    assert pdf.stat().st_mtime_ns == before


def test_the_printer_fetches_nothing_but_data_uris(tmp_path):
    secret = tmp_path / "secret.css"
    secret.write_text("h1 { color: red }", encoding="utf-8")
    html = (
        f'<link rel="stylesheet" href="{secret.as_uri()}">'
        f'<img src="{secret.as_uri()}"><h1>标题</h1>'
    )
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(print_pdf(html))
    assert "标题" in PdfReader(pdf).pages[0].extract_text()
    # the refused stylesheet left the heading black: no red in the page's content stream
    content = PdfReader(pdf).pages[0].get_contents().get_data()
    assert b"1 0 0 rg" not in content


def test_screen_playlist_carries_a_decodable_qr_of_the_tracked_link(tmp_path):
    settings = write_config(
        tmp_path, [outbox("screen", tmp_path / "screen", qr_position="top-right")]
    )
    store = open_store(settings.database)
    (delivery,) = queue(store, add_packs(store, 1), "screen")
    assert dispatch_due(settings, store).delivered == 1
    folder = _file(store, delivery)
    playlist = json.loads((folder / "playlist.json").read_text(encoding="utf-8"))
    (link,) = store.links_of(delivery_id=delivery)
    track = f"https://kp.example.cn/s/{link['code']}"
    assert playlist["qr"] == {"file": "qr.png", "position": "top-right"}
    assert playlist["link"] == track
    assert decode_qr(folder / playlist["qr"]["file"]) == [track]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert "qr.png" in [f["file"] for f in manifest["files"]]
    ticker = (folder / "ticker.txt").read_text(encoding="utf-8").strip()
    assert ticker.endswith(track) and len(ticker) <= settings.channel("screen").ticker_max
    store.close()
