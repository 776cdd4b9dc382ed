"""The agent bench's soak figures from its samples: RSS per quarter and growth, bursts accounted for."""
from kernelpilot.bench.agent import _at_quarters, _every, _soak_figures


def test_soak_figures_from_samples():
    rss = [(float(t), 1000 + (t // 100) * 10 + (50 if t % 2 else 0)) for t in range(0, 400)]  # swings by 50
    summary = {"aipath": {"layers": {"syscall_load[11]": {"syscalls": 100}, "syscall_load[12]": {"syscalls": 90}}},
               "agent": {"events": 5000, "sensor": {"dropped": 10}}}
    f = _soak_figures(summary, 400.0, [11, 12, 13], 100, rss, [(float(t), t * 10) for t in range(400)])
    assert f["bursts_short"] == 2 and f["syscalls_missing"] == 10 + 100 and f["no_loss_uncounted"] is False
    # after warm-up (30 s): the endpoints land on a low and a high swing; the quarters' medians do not
    assert f["rss_kb_first_last"] == [1000, 1080] and f["rss_growth_after_warmup"] == 0.08
    assert f["rss_kb_at_quarters"] == [[0.0, 1000], [100.0, 1010], [200.0, 1020], [299.0, 1070], [399.0, 1080]]
    assert f["rss_kb_median_per_quarter"] == [1030, 1020, 1050, 1080]
    assert f["rss_growth_median_first_to_last_quarter"] == round(50 / 1030, 4)
    assert [t for t, _ in f["rss_kb_every_30s"]][:3] == [0.0, 30.0, 60.0]
    assert f["events_taken_per_quarter"] == [1000, 1000, 990, 1000]
    assert _at_quarters([]) == [] and _every([], 30) == []


def test_rss_met_needs_the_quarter_medians_too():
    """Endpoints on a high and a low swing hide growth the quarters' medians show (a 30-min soak:
    +6.4 % between the endpoints, +20.9 % from the first quarter's median to the last's)."""
    rss = [(float(t), 1000 + t // 2 - (90 if t == 399 else 0)) for t in range(0, 400)]
    summary = {"aipath": {"layers": {}}, "agent": {"events": 1, "sensor": {"dropped": 0}}}
    f = _soak_figures(summary, 400.0, [], 100, rss, [])
    assert f["rss_growth_after_warmup"] <= 0.10 < f["rss_growth_median_first_to_last_quarter"]
    assert f["rss_met"] is False
    flat = _soak_figures(summary, 400.0, [], 100, [(float(t), 1000 + t % 3) for t in range(400)], [])
    assert flat["rss_met"] is True


def test_anonymous_rss_is_reported_beside_the_whole():
    """The libraries' and rings' pages (file-backed) come and go with the host's page cache: the
    agent's own memory is its anonymous RSS, reported beside VmRSS from the same samples."""
    summary = {"aipath": {"layers": {}}, "agent": {"events": 1, "sensor": {"dropped": 0}}}
    rss = [(float(t), 2000 + (300 if t >= 200 else 0)) for t in range(400)]  # pages of a library came in
    anon = [(float(t), 1000 + t // 10) for t in range(400)]
    f = _soak_figures(summary, 400.0, [], 100, rss, [], anon=anon)
    assert f["rss_growth_after_warmup"] == 0.15 and f["rss_met"] is False
    assert f["rss_anon_kb_first_last"] == [1003, 1039] and f["rss_anon_growth_after_warmup"] == round(36 / 1003, 4)
    assert f["rss_anon_kb_median_per_quarter"] == [1007, 1016, 1026, 1035]
    assert f["rss_anon_growth_median_first_to_last_quarter"] == round(28 / 1007, 4)


def test_bench_agent_parts_are_chosen_with_only():
    """`kpilot bench agent --only cost,faults` runs without the soak; a part it lacks is refused first."""
    import pytest

    from kernelpilot.bench.cli import run_bench
    from kernelpilot.errors import KpError
    with pytest.raises(KpError, match="benchmark 'agent' has the parts cost, soak, faults"):
        run_bench("agent", only="cost,sock")


def test_busy_shares_are_per_part_medians_over_repetitions():
    from kernelpilot.bench.agent import busy_medians
    rows = [{"busy_share_idle": {"sensor": 0.01, "sched": 0.004}},
            {"busy_share_idle": {"sensor": 0.03, "sched": 0.002, "publish": 0.001}},
            {"busy_share_idle": {"sensor": 0.02, "sched": 0.006}},
            {"cpu_share_idle": 0.5}]  # a repetition whose agent reported no state: left out
    got = busy_medians(rows, "idle")
    assert got == {"publish": 0.0, "sched": 0.004, "sensor": 0.02}
    assert busy_medians(rows, "flood") == {}
