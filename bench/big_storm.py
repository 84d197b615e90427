"""Huge reply storms: 20,000, 100,000 and 1,000,000 replies to one list, end to end.

    python bench/big_storm.py                          # all three sizes, 10-minute timeout
    python bench/big_storm.py --replies 20000 --timeout 120
    python bench/big_storm.py --source /tmp/before      # mailstorm from another checkout

Each storm is simulated once (``mailstorm simulate``) into bench/data/ (git-ignored) and
reused: a Sendmail log of one day with ordinary background traffic and a storm of N
replies from N/4 people to a 10-member list over an hour (the list is open: most
repliers are site people off the list, each replying four times on average). Sendmail
and 10 members keep the log near 9.4 lines a reply (9.4M lines, 2 GB at a million),
where Postfix would write 22 lines a reply to the same list: what grows here is the
number of messages in one window, not the deliveries.

Then ``mailstorm run LOGS --out OUT --set reply_storm.min_audience=10`` runs as a fresh
process with the default memory limit and a fresh warehouse; it is killed after
``--timeout`` seconds. Wall time and peak RSS (``wait4``'s ru_maxrss: the process and
the children it waited for, also when killed) are printed as a table and appended to
bench/results/big_storm.jsonl; the run passes when incidents.json holds exactly one
reply_storm, on the storm's list and with its root Message-ID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results" / "big_storm.jsonl"
MAILSTORM = [sys.executable, "-m", "detector"]
SIZES = (20_000, 100_000, 1_000_000)


def generate(replies: int, list_size: int, fmt: str, seed: int) -> tuple[Path, float]:
    """The storm's folder (logs/ and truth.json), simulated unless already there; and the
    seconds the simulation took (0 when reused)."""
    out = DATA / f"big-storm-{fmt}-{replies}-list{list_size}-seed{seed}"
    if (out / "truth.json").exists():  # written after the log: its presence means complete
        return out, 0.0
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([*MAILSTORM, "simulate", "--out", str(out), "--format", fmt,
                    "--incident", "reply_storm", "--list-size", str(list_size),
                    "--repliers", str(max(1, replies // 4)), "--replies", str(replies),
                    "--duration", "60", "--seed", str(seed)], check=True, cwd=ROOT)
    return out, time.perf_counter() - started


def measure(cmd: list[str], timeout: float, source: Path) -> dict:
    """Run ``cmd`` in its own process group, with the ``detector`` package of ``source``;
    wall seconds, peak RSS and how it ended."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    ended, status, usage = "exit", 0, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started, nothing else
            _, status, usage = os.wait4(proc.pid, 0)
            ended = "timeout"
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"ended": ended, "exit": proc.returncode, "seconds": round(seconds, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024) if usage else None,
            "stderr_tail": err.strip().splitlines()[-3:]}


def check(report: Path, truth: dict) -> str:
    """"ok" when incidents.json holds exactly one reply_storm with the storm's root."""
    path = report / "incidents.json"
    if not path.exists():
        return "no incidents.json"
    storms = [i for i in json.loads(path.read_text())["incidents"]
              if i["kind"] == "reply_storm"]
    if len(storms) != 1:
        return f"{len(storms)} reply_storm incidents"
    (s,) = storms
    if s["list"] != truth["list"] or s["root_message_id"] != truth["root_message_id"]:
        return f"wrong storm: list {s['list']}, root {s['root_message_id']}"
    return "ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replies", type=int, action="append", help=f"default: {SIZES}")
    ap.add_argument("--list-size", type=int, default=10)
    ap.add_argument("--format", default="sendmail")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600, help="seconds before the run is "
                    "killed")
    ap.add_argument("--source", type=Path, default=ROOT, help="checkout whose mailstorm "
                    "runs (e.g. a git worktree of an older commit); the storm is always "
                    "simulated by this one")
    args = ap.parse_args(argv)
    source = args.source.resolve()
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or str(source)
    rows = []
    for replies in args.replies or SIZES:
        folder, gen_s = generate(replies, args.list_size, args.format, args.seed)
        truth = json.loads((folder / "truth.json").read_text())["incidents"][0]
        logs = sorted((folder / "logs").iterdir())
        lines = 0
        for log in logs:
            with log.open("rb") as f:
                lines += sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))
        report = folder / "report"
        shutil.rmtree(report, ignore_errors=True)
        run = measure([*MAILSTORM, "run", str(folder / "logs"), "--out", str(report),
                       "--tz", "UTC", "-q",
                       "--set", f"reply_storm.min_audience={args.list_size}"], args.timeout,
                      source)
        verdict = check(report, truth) if run["ended"] == "exit" and not run["exit"] else (
            f"timeout after {args.timeout:.0f} s" if run["ended"] == "timeout"
            else f"exit {run['exit']}: {' | '.join(run['stderr_tail'])}")
        row = {"when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "replies": replies,
               "repliers": truth["repliers"], "list_size": args.list_size,
               "format": args.format, "lines": lines, "mailstorm": commit,
               "mb": round(sum(p.stat().st_size for p in logs) / 1e6),
               "simulate_s": round(gen_s, 1), **run, "result": verdict}
        rows.append(row)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{replies:,} replies: {verdict} ({run['seconds']} s, "
              f"{run['peak_rss_mb']} MB)", file=sys.stderr, flush=True)
    print("| replies | repliers | lines | MB | simulate | `mailstorm run` | peak RSS | result |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        made = f"{r['simulate_s']} s" if r["simulate_s"] else "cached"
        print(f"| {r['replies']:,} | {r['repliers']:,} | {r['lines']:,} | {r['mb']:,} | "
              f"{made} | {r['seconds']} s | {r['peak_rss_mb']} MB | {r['result']} |")
    return 0 if all(r["result"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
