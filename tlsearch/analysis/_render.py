"""One document model, two renderings: Markdown (``report.md``, figures linked) and a self-contained HTML
page (``report.html``, figures embedded as data URIs, inline CSS, no scripts, no network)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, lines: list[str]) -> None:
        if lines:
            self.blocks.append(("ul", lines))

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        if rows:
            self.blocks.append(("table", (headers, [[_cell(c) for c in r] for r in rows])))

    def img(self, path: Path | None, caption: str) -> None:
        if path is not None:
            self.blocks.append(("img", (Path(path), caption)))


def _cell(c: Any) -> str:
    if c is None:
        return ""
    if isinstance(c, float):
        return f"{c:.4g}"
    return str(c)


def markdown(doc: Doc, base: Path) -> str:
    out = [f"# {doc.title}", ""]
    for kind, v in doc.blocks:
        if kind == "h":
            out += ["#" * v[0] + " " + v[1], ""]
        elif kind == "p":
            out += [v, ""]
        elif kind == "ul":
            out += [f"- {x}" for x in v] + [""]
        elif kind == "table":
            headers, rows = v
            out.append("| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("")
        elif kind == "img":
            out += [f"![{v[1]}]({v[0].relative_to(base).as_posix()})", f"*{v[1]}*", ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}h1{border-bottom:2px solid #3a6ea5}h2{margin-top:1.6em;color:#24476b}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}th,td{border:1px solid #ccd;padding:3px 7px;text-align:left}
th{background:#eef2f8}tr:nth-child(even) td{background:#fafbfd}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.85em;color:#555}.lead{background:#f3f7ee;border-left:4px solid #5a9a2a;padding:.5em 1em}"""


def html_page(doc: Doc) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(doc.title)}</title><style>{CSS}</style></head><body>", f"<h1>{e(doc.title)}</h1>"]
    first_list = True
    for kind, v in doc.blocks:
        if kind == "h":
            out.append(f"<h{v[0]}>{e(v[1])}</h{v[0]}>")
        elif kind == "p":
            out.append(f"<p>{e(v)}</p>")
        elif kind == "ul":
            cls = ' class="lead"' if first_list else ""
            first_list = False
            out.append(f"<ul{cls}>" + "".join(f"<li>{e(x)}</li>" for x in v) + "</ul>")
        elif kind == "table":
            headers, rows = v
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                       + "</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(v[0].read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{e(v[1])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(v[1])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
