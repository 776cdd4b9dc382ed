"""The pilots' per-process tables stay bounded over a long run with many short-lived processes
(a 30-min soak starts one each second; a busy host many more)."""
import numpy as np

from kernelpilot.agent import config as C
from kernelpilot.agent.aipath_pilot import AipathPilot
from kernelpilot.traces import schema as S


def _switches(tgids):
    ev = np.zeros(len(tgids), S.EVENT_DTYPE)
    ev["kind"], ev["pid"], ev["tgid"], ev["comm"] = S.SCHED_SWITCH, tgids, tgids, b"short"
    return ev


def test_aipath_names_are_forgotten_with_their_rows():
    p = AipathPilot(C.defaults()["aipath"], live=False)
    for i in range(4):  # 40,000 processes, each seen once
        p.observe(_switches(np.arange(i * 10_000, (i + 1) * 10_000) + 1))
    assert len(p.rows) <= 20_000
    assert set(p.comm) <= set(p.rows), (len(p.comm), len(p.rows))
    assert p.summary()["processes"] == len(p.rows)
