"""Whatever the arguments and files, the CLI ends with one line, never a traceback.

Issue 12.3: each named input (an Exim line dated 0000-01-01, --year 99999, a newline in a
file name, a rule file nested 10,000 deep, --repliers above --list-size, a window of 10^20
days) runs the real CLI in a subprocess; then hypothesis draws random invocations of
every subcommand, in process through click's CliRunner (a subprocess each would cost a
second of imports), and any exception escaping is a failure that names the arguments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
#: the exit statuses the CLI documents (docs/nightly.md): ok, error, usage, --fail-on, empty,
#: an input skipped (random bytes may start like a .gz or .bz2 and be a truncated one)
STATUSES = {0, 1, 2, 3, 4, 5}
POSTFIX = "Nov 14 09:00:0{} mx postfix/smtpd[1]: connect from x[192.0.2.1]\n"
EXIM = ("{} 10:02:11 1c66j7-0000Wa-3A <= a@b.example H=x [192.0.2.1] P=esmtp S=1 "
        "id=m{}@b.example\n")


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TZ": "UTC", "PYTHONPATH": str(ROOT)})


def _one_line(proc: subprocess.CompletedProcess[str], status: int, prefix: str = "Error:") -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, proc.stderr
    lines = proc.stderr.splitlines()
    if status == 2:  # click puts its usage lines above a usage error's one line
        lines = [line for line in lines if line.startswith(("Error:", "warning:"))]
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    return lines[0]


def _rules_with(tmp_path: Path, name: str, edit: str | None = None, text: str | None = None
                ) -> Path:
    """A copy of the built-in rules folder with one file edited or replaced."""
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / f"{name}.yaml"
    if edit is not None:
        old, new = edit.split("=>")
        path.write_text(path.read_text().replace(old, new))
    if text is not None:
        path.write_text(text)
    return folder


def test_exim_line_dated_year_zero_is_unparsed(tmp_path: Path) -> None:
    log = tmp_path / "mainlog"
    log.write_text(EXIM.format("0000-01-01", 1) + EXIM.format("2016-11-14", 2))
    proc = _cli("run", log, "--out", tmp_path / "out", "-q", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    rows = _cli("sql", "SELECT kind, ts IS NULL AS no_time FROM events ORDER BY line_no",
                "--format", "csv", "--db", tmp_path / "out" / "mailstorm.duckdb", cwd=tmp_path)
    assert rows.stdout.lower().split() == ["kind,no_time", "unparsed,true", "received,false"]


def test_year_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(POSTFIX.format(1))
    proc = _cli("run", log, "--out", tmp_path / "out", "--year", "99999", cwd=tmp_path)
    assert "'--year'" in _one_line(proc, 2)


def test_newline_in_file_name(tmp_path: Path) -> None:
    log = tmp_path / "mail\n.log"
    log.write_text(POSTFIX.format(1))
    proc = _cli("run", log, "--out", tmp_path / "out", "-q", cwd=tmp_path)
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr
    assert len(proc.stderr.splitlines()) <= 1, proc.stderr


def test_newline_in_a_missing_file_name_stays_one_line(tmp_path: Path) -> None:
    proc = _cli("rules", "show", "x", "--rules", tmp_path / "no\nsuch", cwd=tmp_path)
    assert "no\\nsuch" in _one_line(proc, 1)


def test_deeply_nested_rule_file(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "reply_storm", text="a: " + "[" * 10_000 + "]" * 10_000)
    line = _one_line(_cli("rules", "check", rules, cwd=tmp_path), 1)
    assert "reply_storm.yaml:1: rule file nested too deeply" in line
    log = tmp_path / "mail.log"
    log.write_text(POSTFIX.format(1))
    proc = _cli("run", log, "--out", tmp_path / "out", "--rules", rules, cwd=tmp_path)
    assert "nested too deeply" in _one_line(proc, 1)


def test_since_the_first_day_of_year_one_reads_everything(tmp_path: Path) -> None:
    # the day before it, where the scope's margin would start, is not a date
    log = tmp_path / "mail.log"
    log.write_text(POSTFIX.format(1))
    proc = _cli("run", log, "--year", "2016", "--out", tmp_path / "out", "--since",
                "0001-01-01", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "incidents.json").is_file()


def test_repliers_above_list_size(tmp_path: Path) -> None:
    # documented: the extra repliers are site people posting to an open list
    proc = _cli("simulate", "--out", tmp_path / "sim", "--list-size", "10", "--repliers",
                "50", "--background", "5", cwd=tmp_path)
    _one_line(proc, 0, prefix="wrote ")
    proc = _cli("simulate", "--out", tmp_path / "sim", "--list-size", "10", "--repliers",
                "10" + "0" * 20, cwd=tmp_path)
    assert "'--repliers'" in _one_line(proc, 2)


def test_window_of_1e20_days(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "reply_storm", edit="window: 60m=>window: 1" + "0" * 20 + "d")
    line = _one_line(_cli("rules", "check", rules, cwd=tmp_path), 1)
    assert line.endswith("reply_storm.yaml:16: bad duration '100000000000000000000d': "
                         "must be at most 366d")
    log = tmp_path / "mail.log"
    log.write_text(POSTFIX.format(1))
    proc = _cli("run", log, "--out", tmp_path / "out", "--rules", rules, cwd=tmp_path)
    assert "reply_storm.yaml:16: bad duration" in _one_line(proc, 1)


# ---- random invocations -----------------------------------------------------------------

_NUMBERS = st.sampled_from(["0", "-1", "1", "10", "2016", "9999", "10000", "99999",
                            str(2**63), str(10**20), "-" + str(10**30), "1e3", "nan", "x"])
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) \
    | st.sampled_from(["", "a\nb", "a\x00b", "Ünïcødé", "é\r\n", " ", "-", "--out"])
_SET = st.builds(lambda rule, param, value: f"{rule}.{param}={value}",
                 st.sampled_from(["reply_storm", "auto_storm", "nope", ""]),
                 st.sampled_from(["min_senders", "severity.high", "window", "x"]),
                 _NUMBERS | _TEXT)
_TIME = st.sampled_from(["2016-11-14", "0001-01-01", "9999-12-31T23:59:59-12:00",
                         "2016-13-01", "x"]) | _TEXT
_LINE = st.sampled_from([
    POSTFIX.format(1), EXIM.format("0000-01-01", 1), EXIM.format("9999-12-31", 2),
    EXIM.format("2016-02-30", 3), "Feb 29 10:00:00 mx postfix/qmgr[2]: 1A: removed\n",
    "0000-01-01T00:00:00+14:00 mx postfix/smtpd[1]: connect from x\n",
    "#Fields: date-time,client-ip,event-id\n", "\x00\x00\n", "\n",
]) | _TEXT.map(lambda t: t + "\n")


@st.composite
def _files(draw: st.DrawFn, root: Path) -> dict[str, Path]:
    """Named paths: a missing one, an empty file, random bytes, random lines, a rules
    folder with one random rule file, an empty folder."""
    paths = {"missing": root / "does\nnot exist"}
    paths["empty"] = root / "empty.log"
    paths["empty"].write_bytes(b"")
    paths["bytes"] = root / "bytes.log"
    paths["bytes"].write_bytes(draw(st.binary(max_size=300)))
    paths["lines"] = root / "lines.log"
    paths["lines"].write_text("".join(draw(st.lists(_LINE, max_size=8))), encoding="utf-8",
                              errors="surrogatepass")
    rules = root / "rules"
    rules.mkdir()
    rule = draw(st.sampled_from(["reply_storm", "x"]))
    text = (RULES / "reply_storm.yaml").read_text()
    text = draw(st.sampled_from([
        text, text.replace("60m", draw(_NUMBERS) + "d"), text.replace("10", draw(_NUMBERS)),
        "a: " + "[" * 200 + "]" * 200, "", "- 1\n", draw(_TEXT),
        text.replace("min_senders:", "min_senders: &a [*a]\n  x:")]))
    (rules / f"{rule}.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    paths["rules"] = rules
    paths["folder"] = root / "folder"
    paths["folder"].mkdir()
    return paths


@st.composite
def _invocation(draw: st.DrawFn, root: Path) -> list[str]:
    files = draw(_files(root))
    path = st.sampled_from(sorted(files)).map(lambda k: str(files[k]))
    out = str(root / draw(st.sampled_from(["out", "empty.log", "folder"])))
    db = str(root / "w.duckdb") if draw(st.booleans()) else draw(path)
    command = draw(st.sampled_from(["run", "report", "rules check", "rules show", "sql",
                                    "simulate"]))
    args: list[str] = command.split()
    options: dict[str, st.SearchStrategy[str]] = {}
    if command == "run":
        args += draw(st.lists(path | _TEXT, min_size=1, max_size=3)) + ["--out", out, "-q"]
        options = {"--year": _NUMBERS, "--tz": st.sampled_from(["UTC", "Mars/Base", ""])
                   | _TEXT, "--format": st.sampled_from(["exim", "postfix", "m365", "zz"]),
                   "--host": _TEXT, "--memory-limit": _NUMBERS | _TEXT, "--rules": path,
                   "--set": _SET, "--since": _TIME, "--until": _TIME,
                   "--fail-on": st.sampled_from(["high", "bogus"])}
        args += draw(st.lists(st.sampled_from(["--skip-unknown", "--allow-empty"]),
                              max_size=2))
    elif command == "report":
        args += ["--db", db, "--out", out, "-q"]
        options = {"--rules": path, "--set": _SET, "--since": _TIME, "--until": _TIME,
                   "--memory-limit": _NUMBERS | _TEXT}
    elif command == "rules check":
        args += draw(st.lists(path | _TEXT, max_size=1))
    elif command == "rules show":
        args += [draw(st.sampled_from(["reply_storm", "x", ""]) | _TEXT)]
        options = {"--rules": path, "--set": _SET}
    elif command == "sql":
        args += [draw(st.sampled_from(["SELECT 1", "SELECT * FROM events", "", "x",
                                       "SELECT 1; SELECT 2"]) | _TEXT), "--db", db]
        options = {"--format": st.sampled_from(["csv", "json", "table", "x"])}
    else:  # simulate: sizes stay small or far past a limit, so an example takes < 1 s
        args += ["--out", out, "--background", draw(st.sampled_from(["0", "5", "-1"]))]
        size = st.sampled_from(["-1", "0", "1", "10", "12", "50", str(10**9), str(2**64)])
        options = {"--format": st.sampled_from(["postfix", "exim", "m365", "zz"]),
                   "--list-size": size, "--repliers": size, "--replies": size,
                   "--duration": size, "--seed": _NUMBERS,
                   "--date": st.sampled_from(["0001-01-01", "9999-12-31", "2016-02-30"])
                   | _TEXT,
                   "--incident": st.sampled_from(["mail_loop", "fanout", "bounce_storm",
                                                  "nope"])}
    for name in draw(st.lists(st.sampled_from(sorted(options)), max_size=4)) if options else []:
        args += [name, draw(options[name])]
    return args


def _run_once(args: list[str]) -> None:
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    except SystemExit as exc:  # sys.exit(n) inside a command (rules check, sql | head)
        assert exc.code in STATUSES, args
        return
    except Exception as exc:
        raise AssertionError(f"traceback for mailstorm {args!r}: {exc!r}") from exc
    assert result.exit_code in STATUSES, (args, result.output)
    assert "Traceback" not in result.output, (args, result.output)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_invocations_never_traceback(tmp_path_factory: pytest.TempPathFactory,
                                           data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("cli")
    args = data.draw(_invocation(root), label="args")
    with contextlib.chdir(root):  # a text drawn as "--out" is an output folder named so
        _run_once(args)
