"""One report, two outputs: a list of blocks rendered to Markdown and to self-contained HTML.

Used by the benchmark report and by the dataset audit (:mod:`aigi.audit`), so both look
the same. Text blocks understand the two Markdown bits the reports use, ``**bold**`` and
`` `code` ``; everything else is escaped. Images are PNG files: Markdown links them
relative to the report's folder, HTML embeds them as base64 so the page has no external
asset.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document"]

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;"
    "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}"
    "figcaption{color:#555;font-size:13px}code{background:#f3f3f3;padding:0 3px}"
)


def _inline(text: str) -> str:
    """HTML of one line of report text: escaped, with ``**bold**`` and `` `code` `` kept."""
    t = html.escape(text)
    parts = t.split("`")
    t = "".join(f"<code>{x}</code>" if i % 2 else x for i, x in enumerate(parts))
    parts = t.split("**")
    return "".join(f"<b>{x}</b>" if i % 2 else x for i, x in enumerate(parts))


@dataclass
class Document:
    """A report as a list of blocks (headings, paragraphs, lists, tables, images)."""

    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        """A heading of ``level`` 1..6."""
        if not 1 <= level <= 6:
            raise ValueError(f"heading level must be 1..6, got {level}")
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        """A paragraph."""
        self.blocks.append(("p", text))

    def items(self, lines: list[str]) -> None:
        """A bullet list (nothing when ``lines`` is empty)."""
        if lines:
            self.blocks.append(("ul", list(lines)))

    def table(self, head: list[str], rows: list[list[str]], note: str | None = None) -> None:
        """A table; ``note`` (optional) becomes a paragraph under it."""
        bad = [i for i, r in enumerate(rows) if len(r) != len(head)]
        if bad:
            raise ValueError(f"table rows {bad[:5]} do not have {len(head)} cells like the header {head}")
        self.blocks.append(("table", list(head), [list(r) for r in rows]))
        if note:
            self.p(note)

    def image(self, path: Path, alt: str) -> None:
        """A PNG figure with its caption."""
        self.blocks.append(("img", Path(path), alt))

    def markdown(self, root: Path) -> str:
        """The Markdown text; image links are relative to ``root`` (the report's folder)."""
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                esc = [[str(c).replace("|", "\\|") for c in row] for row in [b[1], *b[2]]]
                lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
                lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
                out.append("\n".join(lines))
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].relative_to(root).as_posix()})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        """A self-contained HTML page (inline style, images embedded)."""
        body: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{_inline(c)}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    def write(self, folder: Path, title: str, stem: str = "report") -> Path:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``folder``; returns the Markdown path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        md = folder / f"{stem}.md"
        md.write_text(self.markdown(folder))
        (folder / f"{stem}.html").write_text(self.html(title))
        return md
