"""Checks the CLI tests share: bad input gives one error line and a non-zero exit; a free port."""
import socket


def one_line_error(p, *words):
    """p failed with exactly one non-empty stderr line, no traceback, naming every word."""
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
