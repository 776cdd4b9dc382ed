"""Regenerate data/syscalls.json (x86-64 and i386 number -> name) from the kernel uapi headers.

    python -m kernelpilot.security.gen_syscalls [/usr/include/x86_64-linux-gnu/asm]

The committed JSON is what kernelpilot reads, so no headers are needed at run time."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "syscalls.json"
DEFAULT_DIR = Path("/usr/include/x86_64-linux-gnu/asm")
LINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$")


def parse(header: Path) -> dict[int, str]:
    table = {}
    for line in header.read_text().splitlines():
        m = LINE.match(line)
        if m:
            table[int(m.group(2))] = m.group(1)
    return table


def main(argv: list[str]) -> None:
    d = Path(argv[0]) if argv else DEFAULT_DIR
    data = {"source": str(d),
            "x86_64": {str(k): v for k, v in sorted(parse(d / "unistd_64.h").items())},
            "i386": {str(k): v for k, v in sorted(parse(d / "unistd_32.h").items())}}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(data, indent=0) + "\n")
    print(f"wrote {OUT}: {len(data['x86_64'])} x86_64, {len(data['i386'])} i386 syscalls")


if __name__ == "__main__":
    main(sys.argv[1:])
