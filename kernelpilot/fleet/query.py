"""`kpilot query "SQL" FILE...`: DuckDB over kernelpilot's files, each file a view named after its kind.

Kinds, found from the file itself (not its name):
- `trace`: Parquet event traces (`kpilot record`); columns ts_ns, cpu, kind, pid, tgid, comm, aux, a0..a3
  (schema.FIELDS says what a0..a3 mean per kind). A helper view `syscall_names(nr, name)` names x86-64
  syscall numbers (a0 of kind 'syscall').
- `alerts`: JSON lines of alerts or agent events (`kpilot security watch --output`, `kpilot agent run --log`).
- `sweep`: Parquet results of `kpilot memory sweep` (one row per trace x policy x size).
Several files of one kind are one view (rows unioned by column name).
"""
from __future__ import annotations

import json
from pathlib import Path

from kernelpilot.errors import KpError

KINDS = ("trace", "alerts", "sweep")
SWEEP_COLUMNS = {"trace", "policy", "miss_ratio"}


def duckdb_module():
    try:
        import duckdb
    except ImportError:
        raise KpError("kpilot query needs DuckDB: pip install 'kernelpilot[scale]' (or pip install duckdb)") from None
    return duckdb


def kind_of(path: Path) -> str:
    """'trace', 'sweep' or 'alerts', from the file's bytes; a one-line error for anything else."""
    if not path.exists():
        raise KpError(f"{path}: no such file")
    if path.is_dir():
        raise KpError(f"{path} is a folder; give the files in it")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"PAR1":
        import pyarrow.parquet as pq
        try:
            names = set(pq.read_schema(path).names)
        except Exception as e:  # pyarrow raises several types for corrupt footers
            raise KpError(f"{path} is a corrupt Parquet file: {str(e).splitlines()[0]}") from None
        from kernelpilot.traces.store import REQUIRED
        if set(REQUIRED) <= names:
            return "trace"
        if SWEEP_COLUMNS <= names:
            return "sweep"
        raise KpError(f"{path} is Parquet but neither a kernelpilot trace nor sweep results "
                      f"(columns: {', '.join(sorted(names)[:8])})")
    first = head.split(b"\n", 1)[0].strip()
    try:
        row = json.loads(first) if first else None
    except (ValueError, UnicodeDecodeError):
        row = None
    if not isinstance(row, dict):
        raise KpError(f"{path} is neither Parquet nor JSON lines (line 1 is not a JSON object)")
    return "alerts"


def _sql_str(p: Path) -> str:
    return "'" + str(p.resolve()).replace("'", "''") + "'"


def connect(files: list[Path]):
    """A DuckDB connection with one view per kind of the given files."""
    duckdb = duckdb_module()
    by_kind: dict[str, list[Path]] = {}
    for f in files:
        by_kind.setdefault(kind_of(Path(f)), []).append(Path(f))
    con = duckdb.connect()
    for kind, paths in by_kind.items():
        lst = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
        if kind == "alerts":
            src = f"read_json_auto({lst}, format='newline_delimited', union_by_name=true)"
        else:
            src = f"read_parquet({lst}, union_by_name=true)"
        try:
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM {src}")
        except duckdb.Error as e:
            raise KpError(f"cannot read {', '.join(map(str, paths))} as {kind}: {_first_line(e)}") from None
    if "trace" in by_kind:
        from kernelpilot.security.syscalls import tables
        import pyarrow as pa
        nr, name = zip(*sorted(tables()["x86_64"].items()))
        con.register("syscall_names_arrow", pa.table({"nr": pa.array(nr, pa.int64()), "name": list(name)}))
        con.execute("CREATE TABLE syscall_names AS SELECT * FROM syscall_names_arrow")
        con.unregister("syscall_names_arrow")
    return con, sorted(by_kind)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def run_query(sql: str, files: list[Path]) -> tuple[list[str], list[tuple]]:
    """Column names and rows of `sql` over the files' views."""
    if not files:
        raise KpError("give at least one file to query (a trace, an alert log or sweep results)")
    if not sql.strip():
        raise KpError("the query is empty")
    duckdb = duckdb_module()
    con, views = connect(files)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    except duckdb.CatalogException as e:
        raise KpError(f"query names something unknown ({_first_line(e)}); views here: "
                      f"{', '.join(views + (['syscall_names'] if 'trace' in views else []))}") from None
    except duckdb.Error as e:
        raise KpError(f"query failed: {_first_line(e)}") from None
    finally:
        con.close()
