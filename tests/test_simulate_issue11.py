"""The simulator's issue-11 days: each written log holds what its truth says, counted
here from the log's lines with plain string tests (no detector involved).

- the ``maillog`` format: Sendmail's MSP lines in the RHEL shape of
  ``tests/test_shared_syslog.py``, each handing its message to the local Postfix;
- ``fixed_message_id``, ``nested_list_copies``, ``list_bounces``, ``repeating_loop`` and
  ``prelog_bounces`` (``detector.simulate.stories``), and their days near a threshold,
  which sit on the thresholds of the rules as loaded.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.quality_matrix import QUICK, cells, expected
from detector.assets import builtin_rules_dir
from detector.rules.loader import load_rules
from detector.simulate import stories
from detector.simulate.day import BENIGN, SCENARIOS, SHAPES, build_day, write_day, writers
from tests.test_shared_syslog import SENDMAIL_HEAD, SENDMAIL_SENT

LINE = re.compile(r"^(\w{3} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([\w/-]+)(?:\[(\d+)\])?: (.*)$")
PF_QID = re.compile(r"^([0-9A-F]{10}): (.*)$")
# the RHEL maillog's Sendmail MSP lines (tests/test_shared_syslog.py), as patterns
MSP_FROM = re.compile(r"^(\w{14}): from=(\S+), size=\d+, class=0, nrcpts=(\d+), "
                      r"msgid=<([^>]+)>, relay=(\w+)@localhost$")
MSP_SENT = re.compile(r"^(\w{14}): to=(\S+), ctladdr=(\w+) \((\d+)/\d+\), delay=\d\d:\d\d:\d\d, "
                      r"xdelay=\d\d:\d\d:\d\d, mailer=relay, pri=\d+, "
                      r"relay=\[127\.0\.0\.1\] \[127\.0\.0\.1\], dsn=2\.0\.0, "
                      r"stat=Sent \(Ok: queued as ([0-9A-F]{10,12})\)$")
FINAL = (" status=sent ", " status=bounced ")


def _day(name: str, fmt: str, tmp: Path, seed: int = 1, subjects: bool = True):
    site, msgs, truth = build_day([name], seed=seed, options=QUICK)
    log = write_day(tmp, fmt, site, msgs, truth, seed=seed, subjects=subjects)
    written = json.loads((tmp / "truth.json").read_text())["incidents"]
    return site, msgs, written, log.read_text().splitlines()


class Postfix:
    """A Postfix log (and the Sendmail lines beside it) read by queue id."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.by_qid: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self.msp: list[tuple[str, str]] = []  # (time, text) of the sendmail[] lines
        for line in lines:
            m = LINE.match(line)
            assert m, line
            when, _, prog, _, text = m.groups()
            if prog == "sendmail":
                self.msp.append((when, text))
                continue
            q = PF_QID.match(text)
            if q:
                self.by_qid[q.group(1)].append((when, prog, q.group(2)))

    def qids_of(self, mid: str) -> list[str]:
        return [q for q, rows in self.by_qid.items()
                if any(text == f"message-id=<{mid}>" for _, prog, text in rows
                       if prog == "postfix/cleanup")]

    def finals(self, qid: str) -> list[str]:
        return [text for _, prog, text in self.by_qid[qid]
                if text.startswith("to=<") and any(s in text for s in FINAL)]

    def sender(self, qid: str) -> str | None:
        for _, prog, text in self.by_qid[qid]:
            if prog == "postfix/qmgr" and text.startswith("from=<"):
                return text[6:text.index(">")]
        return None

    def client(self, qid: str) -> str | None:
        for _, _prog, text in self.by_qid[qid]:
            if text.startswith("client="):
                return text[7:].split(",")[0]
        return None


def _rcpt(text: str) -> str:
    return text[4:text.index(">")]


def _t(when: str) -> datetime:
    return datetime.strptime(f"2016 {when}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)


# ---- the registry ---------------------------------------------------------------------------
def test_every_story_is_a_scenario_of_the_matrix_with_its_expected_kind() -> None:
    assert set(SHAPES) == set(stories.EXPECTED)
    assert set(stories.NOTHING) <= set(BENIGN)
    assert set(stories.DAYS) <= set(SCENARIOS)
    assert "maillog" in writers()
    matrix = {(s, f) for s, f, _ in cells(sorted(writers()))}
    assert {(s, "maillog") for s in SCENARIOS} <= matrix
    assert expected("list_bounces") == "bounce_storm"
    assert expected("nested_list_copies") == "fanout"
    assert expected("repeating_loop") == "mail_loop"
    assert expected("list_bounces_one_short") == "nothing"


def test_the_story_thresholds_are_the_loaded_rules() -> None:
    rules = {r.name: r for r in load_rules(builtin_rules_dir())}
    x = stories.limits()
    assert x.bounces == rules["bounce_storm"].value("min_bounces")
    assert x.duplicates == rules["fanout_duplicates"].value("min_duplicates")
    assert x.passes == rules["mail_loop_hops"].value("min_passes")


@pytest.mark.parametrize("fmt", sorted(writers()))
@pytest.mark.parametrize("name", sorted(stories.DAYS))
def test_every_story_renders_in_every_format(name: str, fmt: str, tmp_path: Path) -> None:
    _, _, truth, lines = _day(name, fmt, tmp_path)
    assert lines
    assert bool(truth) == (name in stories.EXPECTED and not (
        name == "prelog_bounces" and fmt == "m365"))


# ---- point 1: one syslog file, Sendmail handing to Postfix ---------------------------------
def test_real_msp_lines_have_the_shapes_the_simulator_writes() -> None:
    """The patterns below are checked against the RHEL maillog's own lines first."""
    head = SENDMAIL_HEAD[2].split("]: ", 1)[1]
    assert MSP_FROM.match(head)
    assert MSP_SENT.match(SENDMAIL_SENT.split("]: ", 1)[1])


@pytest.fixture(scope="module")
def storm_maillog(tmp_path_factory):
    return _day("reply_storm", "maillog", tmp_path_factory.mktemp("maillog"))


def test_maillog_local_submissions_pass_sendmail_then_postfix(storm_maillog) -> None:
    site, msgs, _, lines = storm_maillog
    log = Postfix(lines)
    froms = {m.group(1): m for _, text in log.msp if (m := MSP_FROM.match(text))}
    sents = {m.group(1): m for _, text in log.msp if (m := MSP_SENT.match(text))}
    assert len(log.msp) == len(froms) + len(sents)  # no other Sendmail line
    assert froms.keys() == sents.keys() and len(froms) > 20
    local = [m for m in msgs if not m.reject and (m.source == "pickup"
                                                  or m.client_host == site.webmail)]
    assert len(froms) == len(local)
    for mqid, sent in sents.items():
        qid = sent.group(5)
        assert log.client(qid) == "localhost[127.0.0.1]"
        assert qid in log.qids_of(froms[mqid].group(4))  # one Message-ID across the hand-off
        assert int(froms[mqid].group(3)) == len(sent.group(2).split(","))
    # Sendmail queued the message before Postfix's smtpd took it from localhost
    for (when, text) in log.msp:
        if m := MSP_SENT.match(text):
            took = next(w for w, _, t in log.by_qid[m.group(5)] if t.startswith("client="))
            queued = next(w for w, t in log.msp if t.startswith(f"{m.group(1)}: from="))
            assert _t(queued) <= _t(took) <= _t(when)


def test_maillog_storm_messages_are_each_queued_once_by_postfix(storm_maillog) -> None:
    site, _, (truth,), lines = storm_maillog
    log = Postfix(lines)
    ids = set(truth["message_ids"])
    qids = [q for mid in ids for q in log.qids_of(mid)]
    assert len(qids) == truth["messages"]  # each storm message one Postfix queue file
    by_msp = {m.group(4) for _, text in log.msp if (m := MSP_FROM.match(text))} & ids
    assert by_msp  # some of the storm came in through Sendmail (webmail users)
    assert sum(len(log.finals(q)) for q in qids) == truth["deliveries"]


# ---- point 2: message identity ---------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["postfix", "maillog"])
def test_fixed_message_id_alerts_are_different_messages(fmt: str, tmp_path: Path) -> None:
    site, _, truth, lines = _day("fixed_message_id", fmt, tmp_path)
    assert truth == []
    log = Postfix(lines)
    for mid, n in ((f"alert@sanmgr.{site.domain}", 40),
                   (f"backup-report@mx1.{site.domain}", 12)):
        qids = log.qids_of(mid)
        assert len(qids) == n
        sizes = {text.split("size=")[1].split(",")[0] for q in qids
                 for _, prog, text in log.by_qid[q] if prog == "postfix/qmgr" and "size=" in text}
        rcpts = {tuple(sorted(_rcpt(t) for t in log.finals(q))) for q in qids}
        assert len(sizes) > n // 2 and len(rcpts) > 2
        assert {log.sender(q) for q in qids} == {mid.split("@")[0].replace(
            "alert", "sanmgr").replace("backup-report", "root") + "@" + site.domain}
    # the broken script's reports come through Sendmail in the shared maillog
    msp = [text for _, text in log.msp if "msgid=<backup-report@" in text]
    assert len(msp) == (12 if fmt == "maillog" else 0)


@pytest.mark.parametrize("name", ["nested_list_copies", "nested_list_copies_one_short"])
def test_nested_list_copies_log_every_copy(name: str, tmp_path: Path) -> None:
    site, msgs, truth, lines = _day(name, "postfix", tmp_path)
    post = next(m for m in msgs if m.recipients == [f"all.wards@{site.domain}"])
    log = Postfix(lines)
    qids = log.qids_of(post.message_id)
    senders = Counter(log.sender(q) for q in qids)
    assert senders[post.sender] == 1  # the post, and one copy a ward list (envelope)
    assert all(s == post.sender or re.fullmatch(r"ward\d\d\.staff-bounces@lists\.nhs\.example", s)
               for s in senders)
    finals = [_rcpt(t) for q in qids for t in log.finals(q)]
    hand_offs = [r for r in finals if r.endswith("@lists.nhs.example")]
    members = Counter(r for r in finals if not r.endswith("@lists.nhs.example"))
    duplicates = sum(members.values()) - len(members)
    assert len(hand_offs) == 8
    assert max(members.values()) == 3
    if truth:
        (t,) = truth
        assert t["deliveries"] == len(finals)
        assert (t["recipients"], t["duplicates"]) == (len(members), duplicates)
        assert duplicates >= stories.limits().duplicates
    else:  # one shared membership short of fanout_duplicates' min_duplicates
        assert duplicates == stories.limits().duplicates - 1


def test_nested_list_copies_in_exim_log_every_copy(tmp_path: Path) -> None:
    _, _, (t,), lines = _day("nested_list_copies", "exim", tmp_path)
    ids = {m.group(1) for line in lines
           if (m := re.search(r" (\S{16}) <= .* id=" + re.escape(t["root_message_id"]), line))}
    finals = [line for line in lines if len(line.split()) > 3 and line.split()[2] in ids
              and line.split()[3] in ("=>", "->", "**")]
    assert len(ids) == t["messages"] and len(finals) == t["deliveries"]


# ---- point 3: bounces and loops ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["list_bounces", "list_bounces_one_short"])
def test_list_bounces_at_once_and_later(name: str, tmp_path: Path) -> None:
    site, msgs, truth, lines = _day(name, "postfix", tmp_path)
    address = "staff.forum@lists.nhs.example"
    verp = re.compile(r"staff\.forum-bounces\+[\w.-]+=[\w.-]+@lists\.nhs\.example")
    log = Postfix(lines)
    copies = [q for q in log.by_qid if verp.fullmatch(log.sender(q) or "")]
    at_once = [t for q in copies for t in log.finals(q) if " status=bounced " in t]
    sent_at = {_rcpt(t): _t(w) for q in copies for w, _, t in log.by_qid[q]
               if t.startswith("to=<") and " status=sent " in t}
    # the remote servers' notices: null sender, from outside, to a member's VERP address
    later = [q for q in log.by_qid if log.sender(q) == "" and not (log.client(q) or "")
             .startswith(("localhost", "unknown")) and log.client(q)
             and any(verp.fullmatch(_rcpt(t)) for t in log.finals(q))]
    assert len(copies) >= 600  # one envelope a member
    for q in later:
        vaddr = _rcpt(log.finals(q)[0])
        member = "@".join(vaddr.split("+", 1)[1].split("@")[0].rsplit("=", 1))
        came = _t(log.by_qid[q][0][0])
        assert timedelta(minutes=9) < came - sent_at[member] < timedelta(minutes=61)
    total = len(at_once) + len(later)
    if truth:
        (t,) = truth
        assert t["list"] == address
        assert (len(at_once), len(later)) == (t["bounced_at_once"], t["bounced_later"])
        assert total == t["bounced"] >= stories.limits().bounces
        assert len(at_once) < stories.limits().bounces  # the later notices are needed
    else:
        assert total == stories.limits().bounces - 1


@pytest.mark.parametrize("name", ["repeating_loop", "repeating_loop_short"])
def test_repeating_loop_passes_and_refusals(name: str, tmp_path: Path) -> None:
    _, msgs, truth, lines = _day(name, "postfix", tmp_path)
    log = Postfix(lines)
    alerts = list(dict.fromkeys(m.message_id for m in msgs if m.sender.startswith("nagios@")))
    assert len(alerts) == 20
    passes = {mid: log.qids_of(mid) for mid in alerts}
    refused = [line for line in lines if " dsn=5.4.6, status=bounced " in line
               and "Too many hops" in line]
    if truth:
        (t,) = truth
        assert {len(q) for q in passes.values()} == {t["passes_per_alert"]}
        assert len(refused) == t["occurrences"] == t["loop_bounces"] == 20
        assert t["messages"] == sum(len(q) for q in passes.values())
    else:  # short of mail_loop_hops' min_passes, and no 5.4.6 for mail_loop_bounces
        assert {len(q) for q in passes.values()} == {stories.limits().passes - 1}
        assert refused == []


@pytest.mark.parametrize("fmt", ["postfix", "exim", "sendmail", "maillog"])
def test_prelog_bounces_have_only_their_deliveries_in_the_log(fmt: str, tmp_path: Path) -> None:
    _, msgs, (t,), lines = _day("prelog_bounces", fmt, tmp_path)
    first = (datetime.fromisoformat(" ".join(lines[0].split()[:2])).replace(tzinfo=UTC)
             if fmt == "exim" else _t(" ".join(lines[0].split()[:3])))
    assert first >= datetime.fromisoformat(t["log_start"].replace("Z", "+00:00"))
    dead = [line for line in lines if "@oldtrust.example" in line]
    if fmt == "exim":
        bounced = [line for line in dead if " ** " in line]
        assert not any(" <= " in line for line in dead)
    else:
        bounced = [line for line in dead if "dsn=5.1.1" in line]
        assert not any("message-id=" in line or "client=" in line for line in dead)
    assert len(bounced) == t["bounced"]
    # their Message-IDs appear nowhere: the intake was before the log's first line
    text = "\n".join(lines)
    assert not any(m.message_id in text for m in msgs if "@oldtrust.example" in
                   "".join(m.recipients))
    start = datetime.fromisoformat(t["start"].replace("Z", "+00:00"))
    times = [_t(" ".join(line.split()[:3])) if fmt != "exim" else
             datetime.fromisoformat(" ".join(line.split()[:2])).replace(tzinfo=UTC)
             for line in bounced]
    assert start <= min(times) and max(times) - start < timedelta(minutes=2)
