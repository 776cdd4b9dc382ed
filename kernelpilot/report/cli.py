"""`kpilot report`, `kpilot top` and `kpilot serve`: what users look at."""
from __future__ import annotations

from pathlib import Path

import typer

from kernelpilot.errors import KpError


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(results: Path = typer.Argument(..., help="JSON from `kpilot bench NAME --json -o FILE` or `kpilot aipath -o`"),
               output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write"),
               title: str = typer.Option("kernelpilot report", "--title"),
               screenshot: Path = typer.Option(None, "--screenshot", help="also save a PNG of the page (headless Chromium)")):
        """Turn bench results into one self-contained HTML page with plots."""
        from kernelpilot.report.html import load, render
        data = load(results)
        if output.is_dir():
            raise KpError(f"{output} is a folder; give a file name for the report")
        try:
            output.write_text(render(data, title, str(results)))
        except OSError as e:
            raise KpError(f"cannot write {output}: {e.strerror}") from None
        print(f"wrote {output} ({output.stat().st_size:,} bytes)")
        if screenshot:
            from kernelpilot.report.shot import screenshot as shoot
            print(f"wrote {shoot(output, screenshot)}")

    from kernelpilot.report.live import register_live
    register_live(app)
