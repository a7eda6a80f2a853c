"""Test documents in every format, generated here (no binary fixtures in the repo).

The facts are invented for the tests and appear nowhere in the product code.
"""

from __future__ import annotations

import io
from pathlib import Path

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

MARKDOWN = """# 行政手册

## 停车 规定
访客车辆须在东门登记，停车证每日九点发放。

## Laptop Policy
Laptops must be locked with a cable when left overnight.
"""

HTML = """<html><head><title>IT 指南</title><script>var leak = "不要索引";</script></head><body>
<div class="toc"><a href="#vpn">VPN</a></div>
<div class="section" id="vpn-setup"><h2>VPN 接入</h2>
<p>远程办公须使用青鸟VPN客户端，端口为 4433。</p></div>
<h2 id="printers">Printers</h2><p>The third-floor printer is called Heron.</p>
<table><tr><th>楼层</th><th>打印机</th></tr><tr><td>三楼</td><td>Heron</td></tr></table>
</body></html>"""


def docx_bytes() -> bytes:
    import docx

    d = docx.Document()
    d.add_heading("差旅制度", level=1)
    d.add_heading("住宿标准", level=2)
    d.add_paragraph("一线城市住宿标准为每晚六百元。")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "城市", "标准"
    table.cell(1, 0).text, table.cell(1, 1).text = "上海", "600"
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "报销"
    sheet.append(["项目", "上限", "备注"])
    sheet.append(["餐费", 120, "每人每天"])
    sheet.append(["出租车", 200, None])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


CSV = "name,room,extension\nMaple,3F-12,8012\nBirch,4F-02,8402\n"


def render_image(lines: list[str], size: int = 32) -> bytes:
    """A PNG with these lines drawn in a CJK font (what a phone photo of a notice holds)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(CJK_FONT), size)
    img = Image.new("RGB", (40 + size * max(len(s) for s in lines), 40 + len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * size * 2), line, font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def scanned_pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF holding only an image of text (no text layer): a scan."""
    from PIL import Image

    img = Image.open(io.BytesIO(render_image(lines)))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PDF")
    return buf.getvalue()


def _text_page_pdf(pages: list[list[str]]) -> bytes:
    """A minimal PDF with a Helvetica text layer, one page per list of lines."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    pages_id = 1 + len(pages) * 2 + 1  # after the font and two objects per page; kids refer to it
    kids = []
    for lines in pages:
        ops = "BT /F1 12 Tf 72 720 Td 16 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
        stream = ops.encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 %d 0 R >> >> >>" % (pages_id, content, font)))
    assert add(b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref))
    return out.getvalue()


def outlined_pdf_bytes() -> bytes:
    """Two text pages with bookmarks: 'Security' > 'Passwords' on page 1, 'Holidays' on page 2."""
    from pypdf import PdfReader, PdfWriter

    raw = _text_page_pdf(
        [
            ["Security", "Passwords", "Passwords rotate every ninety days.", "Use the vault app for shared secrets."],
            ["Holidays", "The office closes for the lantern festival week."],
        ]
    )
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(raw)).pages:
        writer.add_page(page)
    top = writer.add_outline_item("Security", 0)
    writer.add_outline_item("Passwords", 0, parent=top)
    writer.add_outline_item("Holidays", 1)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()
