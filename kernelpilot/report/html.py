"""One self-contained HTML page (inline CSS and SVG, no external resources) from bench JSON."""
from __future__ import annotations

import json
import time
from html import escape

from kernelpilot.report.plots import find, is_num

MAX_ROWS = 400

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2f52;color:#fff;padding:18px 28px} header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8;font-size:13px} main{padding:18px 28px;max-width:1400px}
nav a{margin-right:14px;font-size:13px} section{background:#fff;border-radius:8px;padding:14px 18px;
margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)} h2{font-size:18px;margin:4px 0 10px}
.figs{display:flex;flex-wrap:wrap;gap:14px} figure{margin:0;border:1px solid #e3e6ea;border-radius:6px;
padding:8px;background:#fff} figcaption{font-size:12px;color:#555;margin-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin-top:10px} td,th{border-bottom:1px solid #eceef1;
padding:3px 10px;text-align:left;vertical-align:top} td.num{text-align:right;font-variant-numeric:tabular-nums}
.true{color:#1a7f37;font-weight:600} .false{color:#b42318;font-weight:600} details{margin-top:8px}
"""


def flatten(tree, prefix="") -> list[tuple[str, object]]:
    """(dotted path, leaf) rows; long lists become one summary cell."""
    rows: list[tuple[str, object]] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, list):
        if all(is_num(x) for x in tree) and len(tree) > 8:
            rows.append((prefix, f"{len(tree)} numbers, {min(tree):.4g} .. {max(tree):.4g}"))
        elif all(not isinstance(x, (dict, list)) for x in tree):
            rows.append((prefix, ", ".join(map(str, tree))))
        else:
            for i, v in enumerate(tree[:50]):
                rows += flatten(v, f"{prefix}[{i}]")
            if len(tree) > 50:
                rows.append((prefix, f"... {len(tree) - 50} more"))
    else:
        rows.append((prefix, tree))
    return rows


def _cell(v) -> str:
    if isinstance(v, bool):
        return f'<td class="{str(v).lower()}">{v}</td>'
    if is_num(v):
        return f'<td class="num">{v:,.6g}</td>' if isinstance(v, float) else f'<td class="num">{v:,}</td>'
    return f"<td>{escape(str(v))}</td>"


def table(tree) -> str:
    rows = flatten(tree)
    extra = len(rows) - MAX_ROWS
    body = "".join(f"<tr><th>{escape(k)}</th>{_cell(v)}</tr>" for k, v in rows[:MAX_ROWS])
    if extra > 0:
        body += f"<tr><td colspan=2>... {extra} more rows</td></tr>"
    return f"<table>{body}</table>"


def sections(data) -> list[tuple[str, object]]:
    """Top-level parts: a `bench all` result has one per benchmark; otherwise the whole file."""
    if isinstance(data, dict) and data.get("bench") is None and len(data) > 1 and \
            all(isinstance(v, dict) for v in data.values()):
        return list(data.items())
    name = data.get("bench", "result") if isinstance(data, dict) else "result"
    return [(str(name), data)]


def render(data, title: str = "kernelpilot report", source: str = "") -> str:
    parts = []
    nav = []
    for i, (name, part) in enumerate(sections(data)):
        figs = find(part, (name,))
        fig_html = "".join(f"<figure><figcaption>{escape(f['title'])}</figcaption>{f['svg']}</figure>" for f in figs)
        nav.append(f'<a href="#s{i}">{escape(name)}</a>')
        parts.append(f'<section id="s{i}"><h2>{escape(name)}</h2>'
                     f'<div class="figs">{fig_html or "<p>(no plottable series: figures below)</p>"}</div>'
                     f'<details{" open" if not figs else ""}><summary>all figures ({len(flatten(part))})</summary>'
                     f'{table(part)}</details></section>')
    when = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{CSS}</style></head><body><header><h1>{escape(title)}</h1>'
            f'<p>{escape(source)} · generated {when} by kpilot report</p></header><main>'
            f'<nav>{"".join(nav)}</nav>{"".join(parts)}</main></body></html>\n')


def load(path) -> object:
    from kernelpilot.errors import KpError
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise KpError(f"results file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except UnicodeDecodeError:
        raise KpError(f"{p} is not a text file (expected bench JSON)") from None
    except json.JSONDecodeError as e:
        raise KpError(f"{p} is not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise KpError(f"{p}: JSON nested too deeply to be bench results") from None
    if not isinstance(data, (dict, list)) or not data:
        raise KpError(f"{p} holds no results (expected a JSON object from `kpilot bench NAME --json`)")
    return data
