"""Where the real public data sets are: $KPILOT_DATASETS, else ../shared/datasets beside the repository
(where CI keeps it). Nothing there is shipped; benches and tests that need it say so when it is absent."""
from __future__ import annotations

import os
from pathlib import Path


def datasets_dir() -> Path:
    env = os.environ.get("KPILOT_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
