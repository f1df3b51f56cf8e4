"""The report renderer shared by the benchmark and the audit: Markdown and self-contained HTML alike."""

from __future__ import annotations

import pytest
from PIL import Image

from aigi.benchmark.render import Document


def test_markdown_and_html_from_one_document(tmp_path):
    png = tmp_path / "plots" / "p.png"
    png.parent.mkdir()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(png)
    doc = Document()
    doc.h(1, "Report <1>")
    doc.p("**bold** and `code` and <script>")
    doc.items(["a | b", "c"])
    doc.items([])  # nothing
    doc.table(["name", "value"], [["x|y", "1"], ["z", "2"]], note="a note")
    doc.image(png, "a plot")
    md_path = doc.write(tmp_path, "T <t>", stem="out")
    md = md_path.read_text()
    assert md.startswith("# Report <1>\n\n**bold** and `code`")
    assert "| x\\|y | 1 |" in md and "a note" in md and "![a plot](plots/p.png)" in md
    html = (tmp_path / "out.html").read_text()
    assert "<b>bold</b>" in html and "<code>code</code>" in html and "&lt;script&gt;" in html
    assert "<title>T &lt;t&gt;</title>" in html and html.count("<li>") == 2
    assert "data:image/png;base64," in html and "plots/p.png" not in html  # embedded, no external asset


def test_bad_tables_and_headings_are_refused():
    doc = Document()
    with pytest.raises(ValueError, match="do not have 2 cells"):
        doc.table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="heading level"):
        doc.h(7, "too deep")
