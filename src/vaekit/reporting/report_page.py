"""The HTML of the run report: sections, figures as data: URIs, tables, and the page around them.

Every piece of text goes through `html.escape`; the styles are inline and there is no script, font or
link to anything outside the page, so it opens the same from a file:// URL offline, on a phone or a
wide screen.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.2rem;margin:2rem 0 .5rem;padding-top:.5rem;border-top:1px solid #ddd}
nav{font-size:.9rem;line-height:2}
nav a{margin-right:.8rem;white-space:nowrap;color:#0b57d0}
figure{margin:1rem 0}
img{display:block;max-width:100%;height:auto;image-rendering:auto;background:#fff}
figcaption{font-size:.9rem;color:#444;margin-top:.3rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
td,th{border-bottom:1px solid #e3e3e3;padding:.2rem .6rem;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f0f0f0}
code{font-size:.9em;background:#eee;padding:0 .2em}
details{margin:.5rem 0}
"""


@dataclass(frozen=True)
class Section:
    """One part of the page: `key` is its anchor, `body` HTML already escaped."""

    key: str
    title: str
    body: str


def figure(png: bytes, caption: str, alt: str) -> str:
    """A picture inline as a data: URI, with a caption saying what it is."""
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="{source}" alt="{html.escape(alt)}" loading="lazy">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A table of text cells (escaped here), scrolling sideways on a narrow screen rather than overflowing."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header) if any(header) else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table>{f"<thead><tr>{head}</tr></thead>" if head else ""}<tbody>{body}</tbody>' \
           "</table></div>"


def page(title: str, sections: list[Section]) -> str:
    """The whole document: a title, links to each section, then the sections."""
    links = " ".join(f'<a href="#{section.key}">{html.escape(section.title)}</a>' for section in sections)
    parts = "\n".join(f'<section id="{section.key}"><h2>{html.escape(section.title)}</h2>{section.body}</section>'
                      for section in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><main><h1>{html.escape(title)}</h1><nav>{links}</nav>\n{parts}\n</main></body></html>\n")
