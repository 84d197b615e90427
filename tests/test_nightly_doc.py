"""docs/nightly.md is run, not just read: its cron command and its systemd service's
command run on sample_logs/, its past-day report runs on the warehouse they built, its
units pass `systemd-analyze verify`, and its exit-status table names exactly the statuses
the code defines."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "nightly.md"
SAMPLES = ROOT / "sample_logs"

# the doc's production paths, and what they become in a test
MAILSTORM = "/opt/mailstorm/bin/mailstorm"
LOCK = "/var/lib/mailstorm/nightly.lock"
LOGS = "/var/log/mail.log*"
OUT = "/srv/mailstorm"
FLOCK = "/usr/bin/flock"
# sample_logs/README.md: each file's mtime is its last line (Europe/London, = UTC in Nov)
MTIMES = {"mail.log.1.gz": "2016-11-13T23:58:31", "mail.log": "2016-11-14T23:58:49"}
ZONE = "Europe/London"


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def block_after(label: str, lang: str) -> str:
    """The fenced block that follows the line naming ``label`` (`label`:)."""
    m = re.search(rf"`{re.escape(label)}`:\n\n```{lang}\n(.*?)```", doc(), re.S)
    assert m, f"docs/nightly.md has no ```{lang} block after `{label}`:"
    return m.group(1)


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", doc(), re.S | re.M)
    assert m, f"docs/nightly.md has no section '## {title}'"
    return m.group(1)


def cron_entry() -> tuple[list[str], str, str]:
    """(the five time fields, the user, the command) of the /etc/cron.d line."""
    lines = [ln for ln in block_after("/etc/cron.d/mailstorm", "crontab").splitlines()
             if ln.strip() and not ln.startswith("#") and not re.match(r"^\w+=", ln)]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    return fields[:5], fields[5], fields[6]


def exec_start() -> str:
    m = re.search(r"^ExecStart=(.*)$", block_after("/etc/systemd/system/mailstorm.service",
                                                   "ini"), re.M)
    assert m
    return m.group(1)


def mailstorm_exe() -> str:
    exe = Path(sys.executable).parent / "mailstorm"
    assert exe.exists(), f"{exe}: the console script of the installed package"
    return str(exe)


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    """A /var/log with the sample logs as logrotate leaves them (mtimes kept)."""
    logs = tmp_path / "log"
    logs.mkdir()
    for name, stamp in MTIMES.items():
        shutil.copyfile(SAMPLES / name, logs / name)
        t = datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(ZONE)).timestamp()
        os.utime(logs / name, (t, t))
    return {"logs": logs, "out": tmp_path / "srv", "lock": tmp_path / "nightly.lock",
            "tmp": tmp_path}


def localize(command: str, site: dict[str, Path]) -> str:
    """The doc's command with the test's paths (and the flock wherever it is installed)."""
    for prod, here in [(MAILSTORM, mailstorm_exe()), (LOCK, str(site["lock"])),
                       (LOGS, f"{site['logs']}/mail.log*"), (OUT, str(site["out"])),
                       (FLOCK, shutil.which("flock") or FLOCK)]:
        command = command.replace(prod, here)
    if command.startswith("flock ") and shutil.which("flock"):
        command = f"{shutil.which('flock')} {command[len('flock '):]}"
    return command


def without_flock(command: str) -> str:
    """The mailstorm part of a 'flock [opts] LOCK cmd...' command."""
    return re.sub(r"^\S*flock( -\w+ \d+| -\w)* \S+ ", "", command)


def shell(command: str, site: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    if not shutil.which("flock"):
        command = without_flock(command)
    env = {**os.environ, "TZ": ZONE}
    return subprocess.run(["/bin/sh", "-c", command], cwd=site["tmp"], env=env, text=True,
                          capture_output=True, timeout=300)


def incidents(out: Path) -> list[dict]:
    return json.loads((out / "incidents.json").read_text())["incidents"]


# --- the cron line ---------------------------------------------------------------------

def test_cron_line_is_a_cron_d_entry_of_the_nightly_command() -> None:
    times, user, command = cron_entry()
    for field, (low, high) in zip(times, [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)],
                                  strict=True):
        assert field == "*" or low <= int(field) <= high, times
    assert user == "mailstorm"
    assert "%" not in command  # cron would turn it into a newline
    head = shlex.split(command.split(" || ")[0])
    assert head[:6] == ["flock", "-w", "3600", "-E", "75", LOCK]
    assert head[6:] == [MAILSTORM, "run", LOGS, "--out", OUT, "--keep", "90d", "--fail-on",
                        "high", "-q"]


def test_cron_command_runs_quiet_then_alerts_once(site: dict[str, Path]) -> None:
    """The cron command itself: no output on a night without news (cron mails nothing),
    one mail line when a new incident crosses --fail-on, one when nothing new was read,
    then quiet again."""
    command = localize(cron_entry()[2], site)
    night = shell(command, site)
    assert (night.returncode, night.stdout, night.stderr) == (0, "", "")
    found = incidents(site["out"])
    assert [(i["kind"], i["severity"], i["status"]) for i in found] == [
        ("reply_storm", "medium", "new")]  # the sample storm is medium: no 'high' alert

    alerting = command.replace("--fail-on high", "--fail-on medium").replace(
        str(site["out"]), str(site["tmp"] / "alerting"))
    first = shell(alerting, site)
    assert first.returncode == 0 and first.stderr == ""
    assert first.stdout.startswith("mailstorm: exit status 3 "), first.stdout
    nothing_new = shell(alerting, site)  # the same logs again: broken log shipping
    assert nothing_new.returncode == 0
    assert nothing_new.stdout.startswith("mailstorm: exit status 4 "), nothing_new.stdout
    assert "no new log line" in nothing_new.stderr
    with open(site["logs"] / "mail.log", "a") as log:  # the next night has new lines
        log.write("Nov 15 00:09:30 mx1 postfix/scache[1190]: statistics: start interval "
                  "Nov 14 23:59:30\n")
    again = shell(alerting, site)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.skipif(not shutil.which("flock"), reason="flock (util-linux) not installed")
def test_cron_command_never_overlaps_a_run_holding_the_lock(site: dict[str, Path]) -> None:
    command = localize(cron_entry()[2], site).replace("-w 3600", "-w 1")
    with open(site["lock"], "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a run in progress
        blocked = shell(command, site)
    assert blocked.stdout.startswith("mailstorm: exit status 75 "), blocked.stdout
    assert not site["out"].exists()  # mailstorm never started
    assert shell(command, site).stdout == ""  # lock free: the run goes ahead


def test_systemd_exec_start_runs_without_a_shell(site: dict[str, Path]) -> None:
    """systemd passes ExecStart to no shell: the glob reaches mailstorm as written."""
    command = exec_start()
    assert command == cron_entry()[2].split(" || ")[0].replace("flock", FLOCK, 1)
    argv = shlex.split(localize(command, site))
    if not shutil.which("flock"):
        argv = shlex.split(without_flock(localize(command, site)))
    done = subprocess.run(argv, cwd=site["tmp"], env={**os.environ, "TZ": ZONE}, text=True,
                          capture_output=True, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert [i["kind"] for i in incidents(site["out"])] == ["reply_storm"]


# --- the past day ----------------------------------------------------------------------

def test_past_day_report(site: dict[str, Path]) -> None:
    assert shell(localize(cron_entry()[2], site), site).returncode == 0
    lines = [ln for ln in re.findall(r"```sh\n(.*?)```", section("A report for a past day"),
                                     re.S)[0].splitlines() if " report " in ln]
    assert len(lines) == 1
    command = localize(lines[0].removeprefix("sudo -u mailstorm "), site)
    day = site["out"] / "days" / "2016-11-14"
    assert str(day) in command and "--since 2016-11-14T00:00+00:00" in command
    done = shell(command, site)
    assert (done.returncode, done.stderr) == (0, "")
    assert [(i["kind"], i["start"][:10]) for i in incidents(day)] == [
        ("reply_storm", "2016-11-14")]
    quiet_day = shell(command.replace("2016-11-14", "2016-11-13").replace(
        "2016-11-15", "2016-11-14"), site)
    assert quiet_day.returncode == 0
    assert incidents(site["out"] / "days" / "2016-11-13") == []


# --- the systemd units -----------------------------------------------------------------

UNITS = ["mailstorm.service", "mailstorm.timer", "mailstorm-alert.service"]


def test_units_lock_and_alert() -> None:
    service = block_after("/etc/systemd/system/mailstorm.service", "ini")
    timer = block_after("/etc/systemd/system/mailstorm.timer", "ini")
    assert "Type=oneshot" in service and "OnFailure=mailstorm-alert.service" in service
    assert f"-E 75 {LOCK} " in exec_start()
    assert "StateDirectory=mailstorm" in service  # /var/lib/mailstorm, where the lock is
    assert f"ReadWritePaths={OUT}" in service
    assert re.search(r"^OnCalendar=", timer, re.M) and "WantedBy=timers.target" in timer


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    for name in UNITS:
        text = block_after(f"/etc/systemd/system/{name}", "ini")
        # verify checks that ExecStart's program exists: point it at the installed one
        (tmp_path / name).write_text(text.replace(MAILSTORM, mailstorm_exe()).replace(
            FLOCK, shutil.which("flock") or FLOCK))
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)],
                          text=True, capture_output=True, timeout=60)
    problems = [ln for ln in done.stderr.splitlines() if str(tmp_path) in ln
                or any(ln.startswith(f"{n}:") for n in UNITS)]
    assert done.returncode == 0 and not problems, done.stderr


# --- exit statuses ---------------------------------------------------------------------

def doc_statuses() -> dict[str, set[int]]:
    """The exit-status table: {from: statuses} for the rows with a number."""
    rows: dict[str, set[int]] = {}
    for line in section("Exit statuses").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows.setdefault(cells[1], set()).add(int(cells[0]))
    return rows


def code_statuses() -> set[int]:
    """Every status the code can exit with: 0, click's for our errors (the CLI turns a
    MailstormError into a ClickException, a UsageError into click's UsageError) and
    every literal status or EXIT_* constant in detector/."""
    found = {0, click.ClickException.exit_code, click.UsageError.exit_code}
    for path in (ROOT / "detector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if (any(n.startswith("EXIT_") or n == "exit_code" for n in names)
                        and isinstance(node.value, ast.Constant)
                        and isinstance(node.value.value, int)):
                    found.add(node.value.value)
            elif isinstance(node, ast.Call) and node.args and isinstance(
                    node.args[0], ast.Constant) and isinstance(node.args[0].value, int):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in {"exit", "SystemExit", "_exit"}:
                    found.add(node.args[0].value)
    return found


def test_exit_status_table_is_what_the_code_defines() -> None:
    statuses = doc_statuses()
    assert statuses.get("mailstorm") == code_statuses(), (
        "docs/nightly.md's exit statuses differ from the code's: document new ones there")


def test_exit_status_table_flock_row_is_the_commands() -> None:
    conflict = re.search(r"-E (\d+)", exec_start())
    assert conflict
    assert doc_statuses()["flock"] == {int(conflict.group(1))}


def test_fail_on_status_is_three() -> None:
    from detector.cli import EXIT_FAIL_ON

    assert EXIT_FAIL_ON == 3
    assert "| 3 | mailstorm | `--fail-on SEVERITY`" in section("Exit statuses")
