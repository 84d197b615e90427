"""Format sniffing: every corpus log file and every simulated format is read by the
parser of its format; files holding only the message part of an MTA's lines are named as
that MTA (their lines, without time, are counted unparsed); a syslog file without mail
programs is ``syslog``; text that is no log is no known format."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from detector import formats
from detector.simulate.day import build_day, write_day, writers
from detector.sources import head_lines

# corpus folder -> formats its files may be
EXPECTED = {
    "postfix": {"postfix"}, "exim": {"exim"}, "sendmail": {"sendmail"},
    "mailman": {"mailman"}, "m365": {"m365"}, "exchange": {"exchange", "exchange_protocol"},
}


def test_every_corpus_log_sniffs_as_its_format(corpus_dir: Path) -> None:
    seen = 0
    for folder, allowed in EXPECTED.items():
        for path in sorted((corpus_dir / folder).iterdir()):
            found = formats.sniff(head_lines(str(path), 200))
            assert found in allowed, (path.name, found)
            seen += 1
    assert seen >= 30


def test_non_mail_syslog_is_plain_syslog(corpus_dir: Path) -> None:
    for name in ("lnav.log", "lua_sandbox_extensions.log"):
        assert formats.sniff(head_lines(str(corpus_dir / "syslog" / name), 200)) == "syslog"


def test_text_that_is_no_log_is_no_known_format(corpus_dir: Path) -> None:
    assert formats.sniff(head_lines(str(corpus_dir / "SOURCES.md"), 200)) is None
    prose = ["Postfix is a mail server. It writes lines such as", "warning: header checks",
             "to its log, which mailstorm reads.", "", "fatal: nothing"]
    assert formats.sniff(prose) is None


@pytest.mark.parametrize("fmt", sorted(writers()))
def test_simulated_logs_sniff_as_their_format(fmt: str, tmp_path: Path) -> None:
    site, messages, truth = build_day(["reply_storm"], seed=random.Random(fmt).randrange(99))
    log = write_day(tmp_path, fmt, site, messages[:300], truth, seed=1)
    # the MTA log beside Mailman's; a maillog shared by Sendmail and Postfix opens with
    # Postfix lines (Sendmail's are read by line, in the shared file)
    expect = {"mailman": "sendmail", "maillog": "postfix"}.get(fmt, fmt)
    assert formats.sniff(head_lines(str(log), 200)) == expect
    for other in log.parent.iterdir():  # Mailman's own logs
        if other != log and other.stat().st_size:
            assert formats.sniff(head_lines(str(other), 200)) == "mailman"
