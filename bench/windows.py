"""Time the windowed rule shape against the self-join it replaced, on one huge group.

    .venv/bin/python bench/windows.py                      # 20,000 / 100,000 / 1,000,000
    .venv/bin/python bench/windows.py --size 20000 --old-max 20000 --timeout 600

A synthetic logical_messages table (SQL over range(), no log files) holds one list with
N replies spread over two hours from N/10 people, each to 3,000 recipients: a storm far
beyond any real one, in one group, which is what made the self-join quadratic. The
shipped reply_storm rule is compiled both ways (the old SQL is the reference of
tests/test_rule_windows.py) and run into a temporary table, as the pipeline runs it,
under DuckDB's default 1 GB memory limit. Each run is a fresh process: time is the
query's wall time, peak RSS the process's maximum resident set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPAN_US = 2 * 3600 * 1_000_000  # the messages' spread: two hours

TABLE = """
CREATE TABLE logical_messages AS
SELECT
    'm' || i AS message_uid,
    'u' || (hash(i) % greatest(? // 10, 1)) || '@site.example' AS sender,
    'Re: all staff' AS subject, TRUE AS is_reply, FALSE AS is_auto,
    TIMESTAMPTZ '2016-11-14 09:00:00+00' + to_microseconds(i * ? // ?) AS first_seen,
    3000 AS recipients, 3000 AS deliveries, CAST(hash(i) % 3 AS BIGINT) AS bounced,
    1 AS submitted, 0 AS loop_bounces, NULL::VARCHAR AS to_address,
    NULL::BIGINT AS max_passes, 'all.staff@site.example' AS list, 't1' AS thread_id
FROM range(?) t(i)
"""


def _peak_rss_mb(pid: int | str = "self") -> int | None:
    """A process's peak resident set (VmHWM), in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) // 1024 if line else None


def one(which: str, size: int) -> dict[str, object]:
    """Build the table and run one shape once, in this process."""
    import duckdb

    sys.path.insert(0, str(REPO))
    from detector.assets import builtin_rules_dir
    from detector.rules.compiler import compile_rule
    from detector.rules.loader import load_rules
    from tests.test_rule_windows import reference

    rule = next(r for r in load_rules(builtin_rules_dir()) if r.name == "reply_storm")
    compiled = compile_rule(rule)
    sql, params = (compiled.sql, compiled.params) if which == "new" else reference(
        rule, compiled.measures)
    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    con.execute(TABLE, [size, SPAN_US, size, size])
    start = time.perf_counter()
    row: dict[str, object] = {"shape": which, "size": size}
    try:
        con.execute(f"CREATE TEMP TABLE _hits AS {sql}", params)
        hits = con.execute("SELECT count(*) FROM _hits").fetchone()
        row.update(outcome="ok", hits=hits[0] if hits else 0)
    except duckdb.Error as exc:
        row["outcome"] = str(exc).splitlines()[0][:120]
    row.update(seconds=round(time.perf_counter() - start, 2), peak_rss_mb=_peak_rss_mb())
    return row


def measure(which: str, size: int, timeout: float) -> dict[str, object]:
    """Run ``one`` in a fresh process; its outcome, time and peak RSS."""
    cmd = [sys.executable, __file__, "--one", which, "--size", str(size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        rss = _peak_rss_mb(proc.pid)  # before the kill, while /proc still has it
        proc.kill()
        proc.communicate()
        return {"shape": which, "size": size, "outcome": f"timeout after {timeout:.0f} s",
                "seconds": None, "peak_rss_mb": rss}
    if proc.returncode != 0:
        return {"shape": which, "size": size, "outcome": f"exit {proc.returncode}"}
    result: dict[str, object] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, action="append",
                        help="messages in the group (repeatable)")
    parser.add_argument("--old-max", type=int, default=100_000,
                        help="largest size to run the quadratic self-join at")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--one", choices=["old", "new"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.size[0])))
        return
    for size in sorted(args.size or [20_000, 100_000, 1_000_000]):
        for which in ("old", "new"):
            if which == "old" and size > args.old_max:
                print(json.dumps({"shape": which, "size": size, "outcome": "not run"}))
                continue
            print(json.dumps(measure(which, size, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
