"""The AI path drawn as a flow: one box per layer, top (user space) to bottom (hardware), with
arrows between and each phase's share of the layer's activity as a coloured strip."""
from __future__ import annotations

from html import escape

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def _human(n, unit="") -> str:
    if n is None:
        return ""
    if unit == "B":
        for u in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(n) < 1024 or u == "TiB":
                return f"{n:.0f} {u}" if u == "B" else f"{n:.1f} {u}"
            n /= 1024
    return f"{n:,}"


def named_calls(result: dict, layer: dict, k: int = 3) -> str:
    """The busiest named calls of a layer: runtime functions (uprobes) in user space, ioctl names
    on the device files."""
    if layer["name"] == "user space":
        funcs = (result.get("uprobes") or {}).get("functions") or {}
        top = sorted(((f["symbol"], f["calls"]) for f in funcs.values() if f["calls"]), key=lambda x: -x[1])
    elif layer["name"] == "devices":
        agg: dict[str, int] = {}
        for f in layer["detail"].get("files", {}).values():
            for n, v in (f.get("ioctls_by_name") or {}).items():
                agg[n] = agg.get(n, 0) + v["count"]
        top = sorted(agg.items(), key=lambda x: -x[1])
    else:
        return ""
    return ", ".join(f"{n} {c:,}" for n, c in top[:k])


def flow_svg(result: dict) -> str:
    layers, phases = result["layers"], result.get("phases", [])
    box_w, box_h, gap, left, strip_w = 330, 64, 26, 20, 380
    width = left + box_w + 40 + strip_w + 20
    height = 60 + len(layers) * (box_h + gap)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arr" markerWidth="10" markerHeight="8" refX="5" refY="4" orient="auto">'
           '<path d="M0,0 L10,4 L0,8 z" fill="#555"/></marker></defs>']
    x_strip = left + box_w + 40
    out.append(f'<text x="{x_strip}" y="20" font-weight="bold">share of each layer\'s count per phase</text>')
    for i, p in enumerate(phases):  # legend
        lx = x_strip + (i % 4) * 95
        ly = 34 + (i // 4) * 14
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{lx + 14}" y="{ly}" font-size="10">{escape(p["name"])}</text>')
    for i, layer in enumerate(layers):
        y = 50 + i * (box_h + gap)
        out.append(f'<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="#eef3fb" stroke="#4c72b0"/>')
        out.append(f'<text x="{left + 10}" y="{y + 18}" font-weight="bold">{escape(layer["name"])}</text>')
        line = f'{_human(layer["count"])} {layer["count_unit"]}'
        if layer.get("bytes"):
            line += f', {_human(layer["bytes"], "B")} {layer.get("bytes_unit", "")}'
        out.append(f'<text x="{left + 10}" y="{y + 34}" font-size="11">{escape(line)}</text>')
        if layer.get("time_s"):
            out.append(f'<text x="{left + 10}" y="{y + 47}" font-size="11" fill="#444">'
                       f'{layer["time_s"]:.3f} s {escape(layer.get("time_unit", ""))}</text>')
        named = named_calls(result, layer)
        if named:
            out.append(f'<text x="{left + 10}" y="{y + 60}" font-size="10" fill="#1d2f52">'
                       f'{escape(named[:70])}<title>{escape(named)}</title></text>')
        if i + 1 < len(layers):
            cx = left + box_w / 2
            out.append(f'<line x1="{cx}" y1="{y + box_h}" x2="{cx}" y2="{y + box_h + gap - 4}" stroke="#555" '
                       f'stroke-width="2" marker-end="url(#arr)"/>')
        total = sum(p["layers"][i]["count"] or 0 for p in phases)
        x = x_strip
        for j, p in enumerate(phases):
            c = p["layers"][i]["count"] or 0
            w = strip_w * c / total if total else 0
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y + 14}" width="{w:.1f}" height="24" '
                           f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(p["name"])}: {c:,}</title></rect>')
            x += w
        if not total:
            out.append(f'<text x="{x_strip}" y="{y + 30}" fill="#888">none</text>')
    out.append("</svg>")
    return "\n".join(out)
