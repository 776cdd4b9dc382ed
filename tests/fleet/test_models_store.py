"""`kpilot models push|pull` to directories, file:// and a local S3 server (moto, loopback), and
`kpilot models watch --kernel` hot-swapping a model in the real kernel."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_checks import one_line_error  # noqa: E402

from kernelpilot.models import demo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args, env=None, user=None, timeout=60):
    cmd = [sys.executable, "-m", "kernelpilot.cli", *map(str, args)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="module")
def trees():
    """Two different tree models (other seeds and depths: other predictions)."""
    a = demo.train("tree", n=1500, seed=0, depth=6)[0]
    b = demo.train("tree", n=1500, seed=1, depth=3)[0]
    return a, b


def broken_copy(src, dst):
    d = json.loads(src.read_text())
    d["params"]["feature"]["data"][0] = 999  # a feature index the model does not have
    dst.write_text(json.dumps(d))


def test_push_pull_directory_and_file_uri(tmp_path, trees):
    a, _ = trees
    m = a.save(tmp_path / "sched.json")
    store = tmp_path / "store"
    p = cli("models", "push", m, "--to", store, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["name"] == "sched.json"
    assert (store / "sched.json").read_bytes() == m.read_bytes()
    assert sorted(os.listdir(store)) == ["sched.json"]  # no temporary left
    out = tmp_path / "got.json"
    out.write_text("old")
    ino = out.stat().st_ino
    p = cli("models", "pull", "sched.json", "--from", f"file://{store}", "-o", out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == m.read_bytes() and out.stat().st_ino != ino  # renamed into place
    from kernelpilot.models.format import Model
    X = demo.make_data(200, seed=5)[0]
    assert np.array_equal(Model.load(out).predict_int(a.to_int(X)), a.predict_int(a.to_int(X)))


def test_pull_validates_before_writing(tmp_path, trees):
    a, _ = trees
    store = tmp_path / "store"
    store.mkdir()
    broken_copy(a.save(tmp_path / "a.json"), store / "bad.json")
    out = tmp_path / "bad.json"
    out.write_text("the model in use")
    one_line_error(cli("models", "pull", "bad.json", "--from", store, "-o", out), f"{store}/bad.json", "feature")
    assert out.read_text() == "the model in use"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "bad.json", "store"]  # no temporary left
    one_line_error(cli("models", "pull", "none.json", "--from", store, "-o", tmp_path / "n.json"),
                   "no model 'none.json'", "bad.json")
    assert not (tmp_path / "n.json").exists()
    one_line_error(cli("models", "pull", "bad.json", "--from", store, "-o", tmp_path / "x.npz"), "must end in .json")
    one_line_error(cli("models", "pull", "../a.json", "--from", store, "-o", tmp_path / "y.json"), "bad model name")


def test_push_refuses_bad_models_and_unwritable_stores(tmp_path, trees):
    a, _ = trees
    good = a.save(tmp_path / "good.json")
    bad = tmp_path / "bad.json"
    broken_copy(good, bad)
    store = tmp_path / "store"
    one_line_error(cli("models", "push", good, bad, "--to", store), str(bad), "feature")
    assert not store.exists()  # nothing pushed when one file is bad
    one_line_error(cli("models", "push", tmp_path / "none.json", "--to", store), "no such model file")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(cli("models", "push", good, "--to", blocker / "models"), "cannot write to the model store")
    one_line_error(cli("models", "push", good, "--to", "gs+bogus://x/y"), "bad model store")
    one_line_error(cli("models", "push", good, "--to", store, user="nobody"), "cannot read", "ermission denied")


def test_push_to_a_store_this_user_may_not_write(trees):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as another user")
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="kp-store-")  # /tmp/..., 0700 by default: opened for `nobody` to read
    try:
        os.chmod(d, 0o755)
        good = trees[0].save(os.path.join(d, "good.json"))
        os.chmod(good, 0o644)
        ro = os.path.join(d, "ro")
        os.mkdir(ro)  # root's, 0755: nobody may not write
        one_line_error(cli("models", "push", good, "--to", ro, user="nobody"), "cannot write to the model store",
                       "ermission denied")
        assert os.listdir(ro) == []
    finally:
        shutil.rmtree(d)


@pytest.fixture(scope="module")
def s3():
    """A local S3-compatible server (moto's server mode) on loopback, with one bucket."""
    pytest.importorskip("moto.server", reason="pip install 'moto[server]' (the test extra)")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    c = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test")
    c.create_bucket(Bucket="fleet-models")
    yield {"q": f"?endpoint_override={host}:{port}&scheme=http&region=us-east-1", "env": env, "client": c}
    srv.stop()


def test_s3_push_pull(tmp_path, trees, s3):
    a, _ = trees
    m = a.save(tmp_path / "sched.json")
    n = a.save(tmp_path / "sched.npz")
    p = cli("models", "push", m, n, "--to", f"s3://fleet-models/v3{s3['q']}", env=s3["env"])
    assert p.returncode == 0, p.stderr
    keys = sorted(o["Key"] for o in s3["client"].list_objects_v2(Bucket="fleet-models")["Contents"])
    assert keys == ["v3/sched.json", "v3/sched.npz"]
    out = tmp_path / "out.npz"
    p = cli("models", "pull", "sched.npz", "--from", f"s3://fleet-models/v3{s3['q']}", "-o", out, env=s3["env"])
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == n.read_bytes()
    one_line_error(cli("models", "pull", "x.json", "--from", f"s3://fleet-models/v3{s3['q']}", "-o",
                       tmp_path / "x.json", env=s3["env"]), "no model 'x.json'", "sched.json, sched.npz")
    one_line_error(cli("models", "push", m, "--to", f"s3://no-such-bucket/v3{s3['q']}", env=s3["env"]),
                   "cannot write to the model store", "bucket")


# --- hot swap in the kernel ------------------------------------------------------------------------
def replace(model, path):
    """What a deploy step does: a new file renamed over the old one."""
    tmp = path.with_name("." + path.name)
    model.save(tmp) if hasattr(model, "save") else tmp.write_text(model)
    os.replace(tmp, path)


def test_watch_swaps_in_kernel_and_keeps_old_on_bad_file(tmp_path, trees, bpf_ok):
    from kernelpilot.fleet.models_store import ModelWatch
    a, b = trees
    path = tmp_path / "model.json"
    a.save(path)
    X = a.to_int(demo.make_data(400, seed=7)[0])
    w = ModelWatch(path)
    try:
        before = w.dep.predict(X)
        assert np.array_equal(before, a.predict_int(X))
        assert w.poll() is None
        replace(b, path)
        ev = w.poll()
        assert ev["event"] == "swapped" and ev["parity"] == 1.0
        after = w.dep.predict(X)
        assert np.array_equal(after, b.predict_int(X)) and not np.array_equal(after, before)
        broken_copy(a.save(tmp_path / "src.json"), tmp_path / "broken.json")
        replace((tmp_path / "broken.json").read_text(), path)
        ev = w.poll()
        assert ev["event"] == "kept" and "feature" in ev["why"] and "\n" not in ev["why"]
        assert np.array_equal(w.dep.predict(X), after)  # the old (b) model still answers
        replace(a, path)
        assert w.poll()["event"] == "swapped" and np.array_equal(w.dep.predict(X), before)
    finally:
        w.close()


def test_watch_cli(tmp_path, trees, bpf_ok):
    a, b = trees
    path = tmp_path / "model.json"
    a.save(path)
    p = subprocess.Popen([sys.executable, "-m", "kernelpilot.cli", "models", "watch", str(path), "--kernel",
                          "--interval", "0.1", "--duration", "60", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        def event():
            line = p.stdout.readline()
            assert line, p.stderr.read()
            return json.loads(line)

        assert event()["event"] == "deployed"
        replace(b, path)
        assert event()["event"] == "swapped"
        replace("not a model", path)
        ev = event()
        assert ev["event"] == "kept" and "cannot read model file" in ev["why"] and "\n" not in ev["why"]
        p.send_signal(signal.SIGTERM)
        last = event()
        assert last == {"event": "stopped", "swaps": 1, "kept": 1}
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    one_line_error(cli("models", "watch", path), "give --kernel")
    one_line_error(cli("models", "watch", tmp_path / "none.json", "--kernel"), "no such model file")


def test_security_models_go_through_their_own_loader(tmp_path):
    """The agent's security model has its own format: pushed and pulled after its loader checks it."""
    from kernelpilot.security.features import Vocabulary
    from kernelpilot.security.model import SecurityModel
    good = tmp_path / "sec.json"
    SecurityModel(Vocabulary(["read", "write", "execve"]), 8, 4).save(good)
    bad = tmp_path / "bad.json"
    d = json.loads(good.read_text())
    d["window"] = 0
    bad.write_text(json.dumps(d))
    store = tmp_path / "store"
    p = cli("models", "push", good, "--to", store)
    assert p.returncode == 0, p.stderr
    p = cli("models", "pull", "sec.json", "--from", store, "-o", tmp_path / "got.json", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["kind"] == "security", p.stderr
    one_line_error(cli("models", "push", bad, "--to", store), str(bad), "window")
    (store / "bad.json").write_text(bad.read_text())
    one_line_error(cli("models", "pull", "bad.json", "--from", store, "-o", tmp_path / "b.json"),
                   f"{store}/bad.json", "window")
    assert not (tmp_path / "b.json").exists()


def test_watch_swaps_the_live_scheduling_classifier(tmp_path, bpf_ok):
    """A scheduling classifier runs on sched_switch; after the swap, a CPU hog's next verdicts come
    from the new tree (here one that calls every task latency-critical)."""
    from kernelpilot.fleet.models_store import ModelWatch
    from kernelpilot.sched import evaluate as E
    clf = E.fit_models(E.synthetic_items((0,), 2.0), bursts=False)[1]
    path = tmp_path / "sched.json"
    clf.model.save(path)
    d = json.loads(path.read_text())
    leaf = np.array(d["params"]["feature"]["data"]) < 0
    for key in ("value", "q_value"):
        v = np.array(d["params"][key]["data"])
        v[leaf] = 1
        d["params"][key]["data"] = v.tolist()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    w = ModelWatch(path, window_ms=100)
    try:
        assert w.sched

        def verdict_after(seq, deadline=15):
            end = time.monotonic() + deadline
            while time.monotonic() < end:
                v = w.dep.verdicts().get(hog.pid)
                if v is not None and v.seq > seq:
                    return v
                time.sleep(0.05)
            raise AssertionError("no new verdict for the hog")

        v = verdict_after(-1)
        v = verdict_after(v.seq)
        assert v.cls == 0  # a hog that never sleeps: batch
        replace(json.dumps(d), path)
        assert w.poll()["event"] == "swapped"
        v = verdict_after(verdict_after(v.seq).seq)  # a window wholly after the swap
        assert v.cls == 1
        replace("{not json", path)
        assert w.poll()["event"] == "kept"
        demo.train("tree", n=1500, depth=3)[0].save(path)  # a valid tree, over other features
        ev = w.poll()
        assert ev["event"] == "kept" and "takes a tree over" in ev["why"]
        assert verdict_after(v.seq).cls == 1  # the swapped-in tree still answers
    finally:
        w.close()
        hog.kill()
        hog.wait()
