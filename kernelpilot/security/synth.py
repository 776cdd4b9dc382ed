"""A synthetic corpus in the ADFA-LD layout, for tests and the benchmark (the real ADFA-LD data set
is not available offline).

Normal traces come from a dozen program models (web server, ssh, ftp, shell, compiler, tar, ...):
a dynamic-loader start-up, then behaviour blocks chosen by each program's own Markov chain, with
random repeats, optional calls and rare-but-normal noise; validation adds drifted program variants.
Attack traces are a victim program's normal behaviour with a family's payload woven in, the six
ADFA-LD families; about one in twelve is a benign-looking child of the attack (as in ADFA-LD),
so perfect detection is not possible. i386 numbers, socket calls through socketcall as on i386."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kernelpilot.security.syscalls import tables
from kernelpilot.traces.importers.adfa import ATTACK, TRAIN, VALID, write_trace_file

# Motifs: '?' optional call, '*' repeated 1-4 times.
BLOCKS = {
    "lib": "open read fstat64 mmap2 mmap2? mprotect mmap2 mmap2? close",
    "start": "brk access? mmap2 access open fstat64 mmap2 close",
    "init": "set_thread_area mprotect mprotect? munmap brk brk? getuid32? uname?",
    "accept": "socketcall fcntl64? socketcall? gettimeofday",
    "http": "read* stat64 open? fstat64 mmap2? read* writev munmap? close? time",
    "poll": "poll gettimeofday? read",
    "log": "time write* fsync?",
    "sshauth": "read open fstat64 read close getuid32? time write rt_sigprocmask",
    "select": "select* read write?",
    "ftpcmd": "read write* lstat64? open? read* close?",
    "fork": "rt_sigprocmask clone rt_sigprocmask? wait4 rt_sigaction? sigreturn?",
    "exec": "rt_sigaction* getpid? stat64 execve",
    "sig": "rt_sigaction* rt_sigprocmask",
    "readf": "open fstat64 read* close",
    "writef": "open write* close",
    "ls": "open fstat64 getdents64* close lstat64* write",
    "cc": "open read* close brk* mmap2? write*",
    "tar": "read* write* lstat64? open? close?",
    "sql": "futex? pread64* pwrite64? fsync? time",
    "cron": "time stat64 nanosleep open? read? close?",
    "env": "getuid32 getgid32? geteuid32 getegid32? ioctl? getcwd?",
    "exit": "exit_group",
}
PROGRAMS = {
    "apache": ["accept", "http", "log", "poll", "readf"],
    "sshd": ["select", "sshauth", "fork", "sig", "log"],
    "vsftpd": ["accept", "ftpcmd", "log", "readf", "sig"],
    "bash": ["sig", "fork", "exec", "env", "readf"],
    "ls": ["env", "ls", "writef"],
    "gcc": ["readf", "cc", "writef", "fork", "exec"],
    "tar": ["readf", "tar", "writef", "ls"],
    "mysqld": ["sql", "poll", "accept", "log", "sig"],
    "cron": ["cron", "fork", "exec", "log"],
    "cat": ["readf", "writef", "env"],
    "python": ["readf", "lib", "env", "writef", "sig"],
    "vim": ["readf", "select", "writef", "env", "sig"],
}
PAYLOADS = {
    "Adduser": "getuid32 setuid32? open fstat64 read close open fcntl64 write* fsync close rename "
               "open write* chmod chown32? close link? unlink",
    "Hydra_FTP": "socketcall read write read write* open read close nanosleep write",
    "Hydra_SSH": "select read open read close time nanosleep write rt_sigprocmask kill?",
    "Java_Meterpreter": "futex* clone mmap2 mprotect futex* socketcall* read* getdents64? stat64 "
                        "clone execve",
    "Meterpreter": "mmap2 mprotect socketcall socketcall read* mprotect dup2 dup2 dup2 execve",
    "Web_Shell": "clone pipe dup2 dup2 close execve wait4 read* write",
}
ATTACK_VICTIMS = {"Adduser": ["apache", "bash"], "Hydra_FTP": ["vsftpd"], "Hydra_SSH": ["sshd"],
                  "Java_Meterpreter": ["apache", "python"], "Meterpreter": ["apache", "vsftpd"],
                  "Web_Shell": ["apache"]}


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nr = {v: k for k, v in tables()["i386"].items()}
        # Each program: a random sparse Markov chain over its blocks.
        self.chain = {}
        for p, blocks in PROGRAMS.items():
            k = len(blocks)
            m = self.rng.dirichlet(np.full(k, 0.4), size=k)
            self.chain[p] = (blocks, m)

    def motif(self, text: str) -> list[str]:
        out = []
        for tok in text.split():
            if tok.endswith("?"):
                if self.rng.random() < 0.5:
                    out.append(tok[:-1])
            elif tok.endswith("*"):
                out += [tok[:-1]] * int(self.rng.integers(1, 5))
            else:
                out.append(tok)
        return out

    def startup(self) -> list[str]:
        calls = ["execve"] + self.motif(BLOCKS["start"])
        for _ in range(int(self.rng.integers(2, 6))):
            calls += self.motif(BLOCKS["lib"])
        return calls + self.motif(BLOCKS["init"])

    def body(self, prog: str, n_blocks: int, drift: float = 0.0) -> list[str]:
        blocks, m = self.chain[prog]
        if drift:
            m = (1 - drift) * m + drift * self.rng.dirichlet(np.ones(len(blocks)), size=len(blocks))
        calls, b = [], int(self.rng.integers(len(blocks)))
        for _ in range(n_blocks):
            calls += self.motif(BLOCKS[blocks[b]])
            if self.rng.random() < 0.03:  # rare but normal
                calls.append(str(self.rng.choice(["gettimeofday", "getpid", "sched_yield", "ioctl",
                                                  "fstat64", "getppid"])))
            b = int(self.rng.choice(len(blocks), p=m[b] / m[b].sum()))
        return calls

    def normal(self, prog: str | None = None, drift: float = 0.0) -> list[str]:
        prog = prog or str(self.rng.choice(list(PROGRAMS)))
        n = int(self.rng.lognormal(3.0, 0.8)) + 2
        return self.startup() + self.body(prog, n, drift) + ["exit_group"]

    def attack(self, family: str) -> tuple[list[str], int]:
        victim = str(self.rng.choice(ATTACK_VICTIMS[family]))
        if self.rng.random() < 0.08:  # a benign-looking child of the attack
            return self.normal(str(self.rng.choice(["bash", "ls", "cat"]))), 0
        calls = self.startup() + self.body(victim, int(self.rng.integers(1, 20)))
        start = len(calls)
        rounds = int(self.rng.integers(1, 6)) if family.startswith("Hydra") else 1
        for _ in range(rounds):
            pay = self.motif(PAYLOADS[family])
            cut = int(self.rng.integers(0, len(pay) + 1))  # weave victim behaviour into the payload
            calls += pay[:cut] + self.body(victim, int(self.rng.integers(0, 3))) + pay[cut:]
        calls += self.body(victim, int(self.rng.integers(0, 10))) + ["exit_group"]
        return calls, start

    def numbers(self, calls: list[str]) -> list[int]:
        return [self.nr[c] for c in calls]


def make_corpus(root, n_train: int = 833, n_valid: int = 2000, attacks_per_family: int = 10,
                folders_per_family: int = 10, seed: int = 0) -> dict:
    """Write an ADFA-LD layout under root; returns {'attack_start': {relpath: index}, counts...}."""
    root = Path(root)
    g = _Gen(seed)
    for d in (TRAIN, VALID, ATTACK):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        write_trace_file(root / TRAIN / f"UTD-{i:04d}.txt", g.numbers(g.normal()))
    for i in range(n_valid):
        drift = 0.3 if g.rng.random() < 0.15 else 0.0
        write_trace_file(root / VALID / f"UVD-{i:04d}.txt", g.numbers(g.normal(drift=drift)))
    starts = {}
    for fam in PAYLOADS:
        for k in range(folders_per_family):
            d = root / ATTACK / f"{fam}_{k + 1}"
            d.mkdir(exist_ok=True)
            for j in range(max(1, attacks_per_family // folders_per_family)):
                calls, start = g.attack(fam)
                name = f"UAD-{fam[:4]}-{k + 1}-{j}.txt"
                write_trace_file(d / name, g.numbers(calls))
                starts[f"{fam}/{d.name}/{name}"] = start
    return {"attack_start": starts, "n_train": n_train, "n_valid": n_valid}
