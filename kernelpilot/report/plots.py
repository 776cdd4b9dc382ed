"""Find plottable shapes in any bench JSON and draw them (matplotlib, inline SVG).

Recognised shapes (anywhere in the tree):
- ROC: {"fpr": [...], "tpr": [...]} (siblings share one figure), or detectors with
  "dr_at_<X>pct_fpr" points (partial ROC, log FPR axis).
- miss ratio vs cache size: {"<size>": {"<policy>": miss_ratio, ...}, ...} with numeric keys, or a
  list of records with cache_size, miss_ratio and policy.
- latency CDF: a list of >= 10 numbers under a key naming a latency, or {"p50": .., "p99": ..}.
- comparisons: a flat dict of 2..16 numbers (bars), e.g. ns per syscall per configuration."""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kernelpilot.report.flow import flow_svg  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "kernelpilot", "figure.dpi": 100, "font.size": 9})

_NUM = re.compile(r"^\d+(\.\d+)?$")
_DR = re.compile(r"^dr_at_([\d.]+)pct_fpr$")
_PCT = re.compile(r"^p(\d+(\.\d+)?)(_\w+)?$")
_QTY = re.compile(r"ratio|per_|_ns$|_us$|_ms$|_s$|seconds|speed|slowdown|improvement|throughput|time|cost|"
                  r"overhead|_x$", re.I)
_CELL_SCORE = re.compile(r"regret|room|closed|fetched|switches|copies|share|below", re.I)
_LAT = re.compile(r"latenc|_us$|_ms$|_ns$|wait|delay", re.I)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _ax(title: str, w=5.2, h=3.4):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig, ax


def _roc_curves(d: dict) -> dict | None:
    curves = {k: v for k, v in d.items() if isinstance(v, dict) and isinstance(v.get("fpr"), list)
              and isinstance(v.get("tpr"), list) and len(v["fpr"]) == len(v["tpr"]) > 1}
    if isinstance(d.get("fpr"), list) and isinstance(d.get("tpr"), list) and len(d["fpr"]) == len(d["tpr"]) > 1:
        curves = {"": d}
    return curves or None


def _dr_points(d: dict) -> dict | None:
    """{name: [(fpr, dr), ...]} from children holding dr_at_Xpct_fpr keys (directly or one level down)."""
    out = {}
    for name, v in d.items():
        if not isinstance(v, dict):
            continue
        pts = [(float(m.group(1)) / 100, x) for k, x in v.items() if (m := _DR.match(k)) and is_num(x)]
        if len(pts) < 2:  # e.g. {"trace": {...}, "window": {...}}: take the first with points
            for sub in v.values():
                if isinstance(sub, dict):
                    pts = [(float(m.group(1)) / 100, x) for k, x in sub.items() if (m := _DR.match(k)) and is_num(x)]
                    if len(pts) >= 2:
                        break
        if len(pts) >= 2:
            out[name] = sorted(pts)
    return out if len(out) >= 1 else None


def _miss_ratio(d: dict) -> dict | None:
    keys = list(d)
    if len(keys) < 2 or not all(_NUM.match(str(k)) for k in keys):
        return None
    rows = [d[k] for k in keys]
    if not all(isinstance(r, dict) for r in rows):
        return None
    pols = [p for p, v in rows[0].items() if is_num(v) and all(is_num(r.get(p)) for r in rows)]
    if all("belady" in r for r in rows):  # `bench memory` cells: the policies' miss ratios, not the scores beside
        pols = [p for p in pols if not _CELL_SCORE.search(p) and all(0 <= r[p] <= 1 for r in rows)]
    if not pols or not all(0 <= r[p] <= 1 for r in rows for p in pols):
        return None
    xs = [float(k) for k in keys]
    return {p: (xs, [r[p] for r in rows]) for p in pols}


def _miss_records(v: list) -> dict | None:
    if not v or not all(isinstance(r, dict) and {"cache_size", "miss_ratio", "policy"} <= set(r) for r in v):
        return None
    out: dict = {}
    for r in sorted(v, key=lambda r: r["cache_size"]):
        xs, ys = out.setdefault(r["policy"], ([], []))
        xs.append(r["cache_size"])
        ys.append(r["miss_ratio"])
    return out


def _percentiles(d: dict) -> list | None:
    pts = [(float(m.group(1)), v) for k, v in d.items() if (m := _PCT.match(k)) and is_num(v)]
    return sorted(pts) if len(pts) >= 3 else None


def aipath_figures(result: dict, title: str) -> list[dict]:
    figs = [{"title": f"AI path (layers): {title}", "svg": flow_svg(result)}]
    phases = result.get("phases", [])
    if phases:
        import numpy as np
        names = [p["name"] for p in phases]
        parts = {"on CPU": [p["layers"][0]["time_s"] for p in phases],
                 "waiting for a CPU": [p["layers"][3]["time_s"] for p in phases],
                 "blocked": [p["layers"][3]["detail"]["blocked_s"] for p in phases]}
        fig, ax = _ax(f"thread time per phase: {title}", w=6, h=3)
        bottom = np.zeros(len(phases))
        for k, v in parts.items():
            ax.bar(names, v, bottom=bottom, label=k)
            bottom += np.asarray(v, dtype=float)
        ax.set_ylabel("thread-seconds")
        ax.legend(fontsize=7)
        figs.append({"title": f"thread time per phase: {title}", "svg": svg(fig)})
    return figs


def find(tree, path=()) -> list[dict]:
    """Every plot the tree holds: [{"title", "svg"}], in tree order."""
    found: list[dict] = []
    title = " / ".join(map(str, path)) or "result"
    if isinstance(tree, dict):
        if tree.get("bench") == "aipath" and "layers" in tree:
            return aipath_figures(tree, title)
        if (c := _roc_curves(tree)):
            fig, ax = _ax(f"ROC: {title}")
            for name, v in c.items():
                ax.plot(v["fpr"], v["tpr"], label=name or None)
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            if len(c) > 1:
                ax.legend(fontsize=7)
            return [{"title": f"ROC curves: {title}", "svg": svg(fig)}]
        if (p := _dr_points(tree)) and len(p) == len([v for v in tree.values() if isinstance(v, dict)]):
            fig, ax = _ax(f"ROC (detection rate at low FPR): {title}")
            for name, pts in p.items():
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name)
            ax.set_xscale("log")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("detection rate")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=7)
            found.append({"title": f"ROC points: {title}", "svg": svg(fig)})
        if (m := _miss_ratio(tree)):
            found.append({"title": f"miss ratio vs cache size: {title}", "svg": _lines(m, title)})
            return found
        if (pc := _percentiles(tree)):
            fig, ax = _ax(f"latency CDF: {title}")
            ax.step([v for _, v in pc], [q / 100 for q, _ in pc], where="post", marker="o")
            ax.set_xlabel(title.split(" / ")[-1])
            ax.set_ylabel("fraction below")
            found.append({"title": f"latency percentiles: {title}", "svg": svg(fig)})
        nums = {k: v for k, v in tree.items() if is_num(v)}
        if 2 <= len(nums) <= 16 and len(nums) == len(tree) and path and _QTY.search(str(path[-1])):
            found.append({"title": f"comparison: {title}", "svg": _bars(nums, title)})
        if (g := _scores(tree)):
            found.append({"title": f"scores side by side: {title}", "svg": _grouped(g, title)})
            return found
        for k, v in tree.items():
            found += find(v, path + (k,))
    elif isinstance(tree, list):
        if (m := _miss_records(tree)):
            return [{"title": f"miss ratio vs cache size: {title}", "svg": _lines(m, title)}]
        if len(tree) >= 10 and all(is_num(x) for x in tree) and _LAT.search(str(path[-1] if path else "")):
            import numpy as np
            xs = np.sort(np.asarray(tree, dtype=float))
            fig, ax = _ax(f"latency CDF: {title}")
            ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs))
            ax.set_xlabel(str(path[-1]))
            ax.set_ylabel("fraction below")
            return [{"title": f"latency CDF: {title}", "svg": svg(fig)}]
    return found


def _scores(d: dict) -> dict | None:
    """{row: {metric: value in [0, 1]}} when >= 2 children share >= 2 such metrics (AUCs, rates)."""
    rows = {k: v for k, v in d.items() if isinstance(v, dict)}
    if len(rows) < 2 or len(rows) != len(d):
        return None
    common = set.intersection(*(set(k for k, x in v.items() if is_num(x) and 0 <= x <= 1) for v in rows.values()))
    if len(common) < 2:
        return None
    keys = [k for k in next(iter(rows.values())) if k in common]
    return {r: {k: v[k] for k in keys} for r, v in rows.items()}


def _grouped(g: dict, title: str) -> str:
    import numpy as np
    rows = list(g)
    keys = list(next(iter(g.values())))
    fig, ax = _ax(title, w=max(5.2, 0.9 * len(keys) + 2), h=3.4)
    width = 0.8 / len(rows)
    x = np.arange(len(keys))
    for i, r in enumerate(rows):
        ax.bar(x + i * width, [g[r][k] for k in keys], width, label=r)
    ax.set_xticks(x + 0.4 - width / 2, keys, rotation=20, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=min(4, len(rows)), loc="upper center", bbox_to_anchor=(0.5, -0.22))
    return svg(fig)


def _lines(series: dict, title: str) -> str:
    fig, ax = _ax(f"miss ratio vs cache size: {title}")
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name, ls="--" if name == "belady" else "-")
    ax.set_xscale("log")
    ax.set_xlabel("cache size (objects)")
    ax.set_ylabel("miss ratio")
    ax.legend(fontsize=7, ncol=2)
    return svg(fig)


def _bars(nums: dict, title: str) -> str:
    fig, ax = _ax(title, h=0.35 * len(nums) + 1.0)
    names = list(nums)[::-1]
    vals = [nums[n] for n in names]
    ax.barh(names, vals, color=["#c44e52" if v < 0 else "#4c72b0" for v in vals])
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,.4g}", va="center", fontsize=7)
    ax.margins(x=0.2)
    return svg(fig)
