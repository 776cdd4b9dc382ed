"""What kernelpilot's models say about a recorded trace: the 'learn' step of `kpilot run`.
Per busy task: its scheduling class from the scheduling classifier (the same integer model the
kernel can run) and what the agent would do about it in dry-run."""
from __future__ import annotations

import numpy as np

from kernelpilot.errors import KpError


def sched_insights(ev: np.ndarray, top: int = 8) -> list[dict]:
    """Busiest tasks with their class and the agent's plan; [] when the trace has no sched events."""
    from kernelpilot.sched import evaluate as E
    from kernelpilot.sched import features as F
    from kernelpilot.sched.policies import Policy
    try:
        f = F.extract(ev)
    except KpError:
        return []
    X = F.task_class_features(f)
    verdict = E.default_classifier().predict(X)
    run_ns = f.totals[:, 0]
    order = [i for i in np.argsort(-run_ns) if f.pids[i] > 0 and run_ns[i] > 0][:top]
    policy = Policy()
    out = []
    for i in order:
        what = _plan_text(policy.wanted(int(verdict[i]), X[i]), int(f.pids[i]))
        out.append({"pid": int(f.pids[i]), "comm": f.comm[i], "cpu_share": round(float(X[i, 0]) / 1024, 3),
                    "switches_per_s": int(X[i, 1] + X[i, 2]),
                    "class": "latency-critical" if verdict[i] == 1 else "batch", "agent_would": what})
    return out


def _plan_text(plan: dict, pid: int) -> str:
    """The agent's plan in words, with the same exclusions the live agent applies."""
    import os

    from kernelpilot.sched.live import PF_KTHREAD, RT_POLICIES
    if pid == os.getpid():
        return "leave alone (kernelpilot itself)"
    try:
        stat = open(f"/proc/{pid}/stat").read()
        f = stat[stat.rindex(")") + 2:].split()
        if int(f[6]) & PF_KTHREAD:
            return "leave alone (kernel thread)"
        if int(f[38]) in RT_POLICIES:
            return "leave alone (real-time)"
    except (OSError, ValueError, IndexError):
        return "nothing (task has exited)"
    words = []
    if "policy" in plan:
        words.append("SCHED_BATCH" if plan["policy"][0] != 0 and plan["policy"][0] & 0xff == 3 else "SCHED_OTHER")
    if plan.get("nice"):
        words.append(f"nice {plan['nice']:+d}")
    return " + ".join(words) or "leave alone"
