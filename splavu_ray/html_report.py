"""Small blocks for ONE self-contained HTML page: sections, tables, images and line charts.

Everything the page needs is inside it: the style sheet and a tiny script are inline, and every image is a
PNG embedded as ``data:image/png;base64,...``, so a report can be mailed, copied off a cluster or opened
from a bucket with nothing beside it. Text is escaped with :func:`html.escape`; the blocks are plain
strings, joined by :func:`section` and :func:`page`::

    body = [section("Results", table(rows, header=["", "raw", "anonymized"])),
            section("Curves", image(line_chart(epochs, {"loss": losses}, xlabel="epoch"), "loss"))]
    write_page(path, page("run report", body))

The inline script is a self-check for browsers: on ``window.load`` it counts the ``<img>`` elements that
decoded (``complete && naturalWidth > 0``) and writes ``data-images-loaded`` / ``data-images-total`` on
``<body>``, which a headless browser's ``--dump-dom`` shows (tests/evaluation/test_run_report.py).

Charts are matplotlib figures on the Agg backend (no display on clusters or in CI); :func:`image` embeds
and closes them.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1150px;
       padding: 0 16px; color: #1a1a1a; background: #ffffff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.6em; }
p.subtitle { color: #57606a; margin-top: 0; }
p.note { color: #57606a; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; text-align: right; }
th { background: #f6f8fa; }
td:first-child, th:first-child { text-align: left; }
tr.highlight td { background: #fff1e5; font-weight: 600; }
table.kv td { text-align: left; }
div.scroll { overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
"""

# Writes how many <img> decoded, and how many there are, onto <body> once the page has loaded.
_SELF_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
});
"""

# PNG metadata left out of embedded figures (matplotlib's default names its web site).
_PNG_METADATA = {"Software": None}


def page(title: str, sections: Iterable[str], subtitle: str | None = None) -> str:
    """The whole HTML document: ``title`` as <title> and <h1>, then the ``sections`` (HTML strings)."""
    head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
            f"<script>{_SELF_CHECK}</script>\n</head>\n")
    top = f"<h1>{html.escape(title)}</h1>\n"
    if subtitle:
        top += f'<p class="subtitle">{html.escape(subtitle)}</p>\n'
    return head + "<body>\n" + top + "\n".join(sections) + "\n</body>\n</html>\n"


def section(heading: str, *parts: str) -> str:
    """A <section> with an <h2> heading and the given HTML parts (blocks of this module)."""
    return f"<section>\n<h2>{html.escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def paragraph(text: str, note: bool = False) -> str:
    """Escaped text in a <p> (``note``: the smaller grey style for remarks)."""
    cls = ' class="note"' if note else ""
    return f"<p{cls}>{html.escape(text)}</p>"


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell's text: floats with ``digits`` decimals, None as empty, NaN as 'n/a'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        small = value != 0 and abs(value) < 10 ** -digits  # e.g. a learning rate: significant digits
        return f"{value:.3g}" if small else f"{value:.{digits}f}"
    return str(value)


def table(rows: Sequence[Sequence[Any]], header: Sequence[Any] | None = None,
          highlight: Sequence[bool] | None = None, css_class: str | None = None) -> str:
    """An HTML table: ``header`` cells as <th>, each row's cells (formatted by :func:`fmt`, escaped) as
    <td>; ``highlight[i]`` marks row i. Wide tables scroll sideways instead of widening the page."""
    cls = f' class="{html.escape(css_class)}"' if css_class else ""
    out = [f'<div class="scroll"><table{cls}>']
    if header is not None:
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(fmt(c))}</th>" for c in header) + "</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows):
        cls = ' class="highlight"' if highlight is not None and highlight[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def key_values(items: Mapping[str, Any]) -> str:
    """A two-column table of the scalar items (nested dicts flattened to ``outer.inner``)."""
    rows = []
    for key, value in items.items():
        if isinstance(value, Mapping):
            rows += [(f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, (Mapping, list))]
        elif not isinstance(value, list):
            rows.append((key, value))
    return table(rows, css_class="kv")


def pyplot():
    """matplotlib.pyplot on the Agg backend (headless)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, metadata=_PNG_METADATA)
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def image(source: Any, alt: str, dpi: int = 100) -> str:
    """An <img> embedding a PNG as base64: ``source`` is a matplotlib figure (closed afterwards), a PNG
    file's path, or PNG bytes."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        data = Path(source).read_bytes()
    else:
        data = png_bytes(source, dpi)
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"image {alt!r}: not a PNG")
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _values(seq: Sequence[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in seq]


def _draw(ax, x: Sequence[float], series: Mapping[str, Sequence[Any]], styles: Mapping[str, Mapping[str, Any]],
          spans: Sequence[tuple[float, float, str]]) -> None:
    for i, (lo, hi, label) in enumerate(spans):
        ax.axvspan(lo, hi, color=("#eef3fb", "#fbf3e8")[i % 2], zorder=0)
        ax.text((lo + hi) / 2, 0.98, label, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=7, color="#57606a")
    for name, ys in series.items():
        ys = _values(ys)
        style = {"lw": 1.4, **({"marker": "o", "ms": 3} if len(ys) < 30 else {}), **styles.get(name, {})}
        ax.plot(list(x)[:len(ys)], ys, label=name, **style)
    ax.grid(alpha=0.3)


def line_chart(x: Sequence[float], series: Mapping[str, Sequence[Any]], *, title: str = "", xlabel: str = "",
               ylabel: str = "", styles: Mapping[str, Mapping[str, Any]] | None = None,
               spans: Sequence[tuple[float, float, str]] = (), marks: Sequence[tuple[float, str]] = (),
               size: tuple[float, float] = (9.0, 3.6)):
    """One axes: each named series (None = no value, a gap) over ``x``. ``styles``: matplotlib keyword
    arguments per series name; ``spans``: shaded (start, end, label) ranges of x, e.g. training phases;
    ``marks``: dashed vertical (x, label) lines. Returns the figure (embed it with :func:`image`)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    _draw(ax, x, series, styles or {}, spans)
    for pos, label in marks:
        ax.axvline(pos, ls="--", c="black", lw=1, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if series:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def line_panels(x: Sequence[float], series: Mapping[str, Sequence[Any]], *, xlabel: str = "", ncols: int = 3,
                spans: Sequence[tuple[float, float, str]] = (), title: str = "",
                panel_size: tuple[float, float] = (3.8, 2.6)):
    """Small multiples: one panel per named series (for series on different scales, e.g. losses),
    ``ncols`` panels a row, each titled by its name. Returns the figure."""
    plt = pyplot()
    n = max(1, len(series))
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.4),
                             squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (name, ys) in zip(flat, series.items()):
        _draw(ax, x, {name: ys}, {}, spans)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in flat[len(series):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_page(path: str | Path, document: str) -> Path:
    """Write the page (UTF-8), creating the parent folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
