"""A small HTML writer: a page of titled sections holding paragraphs, tables and images.

The page has its style inline and loads nothing from the network. Images are referenced by a
path relative to the page (the PNGs sit beside it) or, with ``embed=True``, inlined as data URIs
so that the one file is the whole report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
from typing import Any, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } code { font-size: 0.9em; word-break: break-all; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; } .note { color: #666; }
tr.has-detail td { border-bottom: none; background: #f8f8f8; } tr.detail td { border-top: none; padding: 0 7px 6px 2em; }
"""


def escape(value: Any) -> str:
  """``value`` as HTML-escaped text."""
  return html.escape(str(value), quote=True)


def code(value: Any) -> str:
  """``value`` as escaped inline code."""
  return f"<code>{escape(value)}</code>"


@dataclasses.dataclass
class Page:
  """An HTML page under construction.

  Example:
    >>> page = Page("Search report")
    >>> page.section("best", "Best architecture")
    >>> page.paragraph("Found at iteration 12.")
    >>> page.write("/tmp/report/index.html")

  Attributes:
    title: the page's title and heading.
    embed: inline the images as data URIs instead of linking them.
  """
  title: str
  embed: bool = False
  _parts: list[str] = dataclasses.field(default_factory=list)
  images: list[str] = dataclasses.field(default_factory=list)

  def section(self, anchor: str, heading: str) -> None:
    """Starts a section with an ``id`` (for links and tests) and a heading."""
    self._parts.append(f'<h2 id="{escape(anchor)}">{escape(heading)}</h2>')

  def paragraph(self, text_html: str, *, note: bool = False) -> None:
    """Adds a paragraph of already-escaped HTML."""
    cls = ' class="note"' if note else ""
    self._parts.append(f"<p{cls}>{text_html}</p>")

  def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
            raw: bool = False, details: Sequence[Any] | None = None) -> None:
    """Adds a table; cells are escaped unless ``raw`` (already HTML).

    Args:
      headers: the column headings.
      rows: the cells, one sequence per row.
      raw: the cells (and details) are already HTML.
      details: one long text per row, drawn under its row across every column, so that prose
        (a reflection) gets the table's width instead of one squeezed column; None for none.
    """
    cell = (lambda v: str(v)) if raw else escape
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for k, row in enumerate(rows):
      cells = "".join(f"<td>{cell(v)}</td>" for v in row)
      if details is None:
        body.append(f"<tr>{cells}</tr>")
      else:
        body.append(f'<tr class="has-detail">{cells}</tr><tr class="detail">'
                    f'<td colspan="{len(headers)}">{cell(details[k])}</td></tr>')
    self._parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

  def image(self, path: str, alt: str, page_dir: str) -> None:
    """Adds the PNG at ``path`` (linked relative to ``page_dir``, or embedded)."""
    if self.embed:
      with open(path, "rb") as f:
        src = "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
    else:
      src = os.path.relpath(path, page_dir).replace(os.sep, "/")
    self.images.append(path)
    self._parts.append(f'<img src="{escape(src)}" alt="{escape(alt)}">')

  def html(self) -> str:
    """The page's text."""
    body = "\n".join(self._parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(self.title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{escape(self.title)}</h1>\n{body}\n</body></html>\n")

  def write(self, path: str) -> str:
    """Writes the page to ``path`` atomically; returns ``path``."""
    from rznas_jax import results  # pylint: disable=g-import-not-at-top
    results.write_atomic(path, self.html())
    os.chmod(path, 0o644)  # a page to share, like the PNGs beside it (mkstemp made it private)
    return path
