"""Incident grouping and cooldown, and the learning-period decisions, on their own."""
import numpy as np
import pytest

from kernelpilot.errors import KpError
from kernelpilot.security.incidents import Incidents
from kernelpilot.security.profiles import LiveProfiles

S = 1_000_000_000


def test_windows_fold_into_one_incident_until_the_cooldown():
    inc = Incidents(cooldown_s=10)
    a, line = inc.add(100, "/usr/bin/tar", "model", 0)
    assert line and a.id == 1 and a.windows == 1
    for t in (1, 5, 14):  # each within 10 s of the last: folded, no new line
        b, line = inc.add(100, "/usr/bin/tar", "model", t * S)
        assert b is a and not line
    assert a.windows == 4 and inc.lines == 1
    # a rule firing in the same process and program: the same incident, one more line
    b, line = inc.add(100, "/usr/bin/tar", "rename_storm", 15 * S)
    assert b is a and line and a.fired == ["model", "rename_storm"] and inc.lines == 2
    # another program in the same pid (after an exec), or another pid: other incidents
    assert inc.add(100, "/usr/bin/gzip", "model", 15 * S)[0].id == 2
    assert inc.add(101, "/usr/bin/tar", "model", 15 * S)[0].id == 3
    assert not inc.add(100, "/usr/bin/tar", "model", 16 * S)[1]  # folded in after the last line
    # quiet for longer than the cooldown: closed; a closing line only where hits came after the
    # incident's last line (incidents 2 and 3 printed all they had)
    assert inc.expire(20 * S) == []
    closed = inc.expire(27 * S)
    assert [c.id for c in closed] == [1] and closed[0].hits == {"model": 5, "rename_storm": 1}
    assert not inc.open and inc.lines == 5
    assert inc.add(100, "/usr/bin/tar", "model", 28 * S)[0].id == 4  # a new incident after it
    assert inc.n == 4


def test_a_hit_after_the_cooldown_opens_a_new_incident_even_before_expire():
    inc = Incidents(cooldown_s=2)
    assert inc.add(7, "x", "model", 0)[0].id == 1
    i, line = inc.add(7, "x", "model", 3 * S)
    assert i.id == 2 and line


def test_learning_periods():
    lp = LiveProfiles(learn_s=10, new_s=5, start_ns=0)
    early = lp.get("/usr/bin/git", 1 * S)
    assert lp.learning(early, model_known=True, ts_ns=9 * S)       # host learning: everyone learns
    assert not lp.learning(early, model_known=False, ts_ns=11 * S)  # learned with the host: judged
    late = lp.get("/tmp/new-prog", 20 * S)
    assert lp.learning(late, model_known=False, ts_ns=24 * S)       # unseen program: learns 5 s
    assert not lp.learning(late, model_known=False, ts_ns=25 * S + 1)
    assert not lp.learning(lp.get("/usr/bin/tar", 20 * S), model_known=True, ts_ns=20 * S)  # known: judged
    lp.learn(late, np.array([3, 1, 3], dtype=np.uint64))
    lp.learn(late, np.array([2], dtype=np.uint64))
    assert list(late.grams()) == [1, 2, 3] and late.learned == 2


def test_profiles_round_trip_and_bad_file(tmp_path):
    lp = LiveProfiles(0, 0, 0)
    p = lp.get("/bin/x", 0)
    p.flags.add("shadow")
    lp.learn(p, np.array([5, 9], dtype=np.uint64))
    lp.save(tmp_path / "p.json")
    back = LiveProfiles(60, 60, 100 * S)
    back.load(tmp_path / "p.json")
    q = back.progs["/bin/x"]
    assert q.flags == {"shadow"} and list(q.grams()) == [5, 9]
    assert not back.learning(q, model_known=False, ts_ns=161 * S)  # known from the file: judged
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(KpError, match="not a kernelpilot profiles file"):
        back.load(tmp_path / "bad.json")
    with pytest.raises(KpError, match=">= 0"):
        LiveProfiles(-1, 0)
