"""Screenshots for docs/: the HTML report of a real aipath run and of `kpilot top`, both rendered
by headless Chromium.  Run: `make screenshots` or `python -m kernelpilot.report.screens docs`."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


def top_svg(path: Path, seconds: float = 3.0) -> Path:
    """Run `kpilot top` headless for a few refreshes and save Textual's SVG screenshot."""
    from kernelpilot.agent.top import TopApp
    from kernelpilot.report.sampler import Sampler

    async def drive():
        app = TopApp(Sampler(events=["sched", "faults"]), interval=0.5)
        async with app.run_test(size=(160, 46)) as pilot:
            while app.refreshes < max(2, int(seconds / 0.5)):
                await pilot.pause(0.25)
            app.save_screenshot(filename=path.name, path=str(path.parent))
            await pilot.press("q")
    asyncio.run(drive())
    return path


def main(out_dir: str = "docs") -> None:
    from kernelpilot.aipath.run import demo_command, trace_ai
    from kernelpilot.report.html import render
    from kernelpilot.report.shot import screenshot
    out = Path(out_dir) / "img"
    out.mkdir(parents=True, exist_ok=True)
    result = trace_ai(demo_command(10))
    (out / "aipath-demo.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    page = out / "report-aipath.html"
    page.write_text(render(result, "kernelpilot report: AI path of a PyTorch run", "kpilot aipath --demo"))
    print(screenshot(page, out / "report.png", 1280, 1250))
    svg = top_svg(out / "top.svg")
    html = out / "top.html"
    html.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#0c0c0c">{svg.read_text()}</body></html>')
    print(screenshot(html, out / "top.png", 1400, 900))
    html.unlink()
    page.unlink()


if __name__ == "__main__":
    main(*sys.argv[1:])
