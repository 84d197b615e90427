"""The log simulator: determinism, truth vs rendered log, and Postfix line shapes."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bench import sample_logs
from detector.simulate import (
    background,
    busy_small_thread,
    make_site,
    newsletter,
    read_lines,
    render_postfix,
    storm,
    utc,
    write_postfix,
)

DAY = utc(2016, 11, 14)
QID = r"[0-9A-F]{10}"
LINE = re.compile(r"^(\w{3} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([\w/-]+)(?:\[(\d+)\])?: (.*)$")


def scenario(seed: int = 7, list_size: int = 400, repliers: int = 12):
    rng = random.Random(seed)
    site = make_site(rng, "nhs.example", lists={"news.letter": 150, "team.radiology": 25})
    msgs, _ = background(site, rng, DAY, 250)
    msgs += newsletter(site, rng, DAY + timedelta(hours=7, minutes=30), list_size=150)[0]
    msgs += busy_small_thread(site, rng, DAY + timedelta(hours=13))[0]
    st, truth = storm(site, rng, DAY + timedelta(hours=9, minutes=58), list_size=list_size,
                      repliers=repliers)
    return site, msgs + st, truth


@pytest.fixture(scope="module")
def rendered():
    site, msgs, truth = scenario()
    return site, msgs, truth, list(render_postfix(site, msgs, seed=7))


def by_queue_id(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        m = re.search(rf"\]: ({QID}): (.*)$", line)
        if m:
            out[m.group(1)].append(m.group(2))
    return out


def test_same_seed_same_text_other_seed_other_text(rendered):
    *_, lines = rendered
    site, msgs, _ = scenario()
    assert list(render_postfix(site, msgs, seed=7)) == lines
    site, msgs, _ = scenario(seed=8)
    assert list(render_postfix(site, msgs, seed=8)) != lines


def test_truth_deliveries_match_the_log(rendered):
    _, _, truth, lines = rendered
    (t,) = truth
    ids = set(t["message_ids"])
    qids = {m.group(1) for line in lines
            if (m := re.search(rf"\]: ({QID}): message-id=<([^>]+)>", line)) and m.group(2) in ids}
    assert len(qids) == t["messages"]
    final = [line for line in lines
             if re.search(rf"\]: ({QID}): to=<", line) and line.split("]: ")[1][:10] in qids
             and (" status=sent " in line or " status=bounced " in line)]
    assert len(final) == t["deliveries"]
    assert t["deliveries"] >= t["messages"] * t["list_size"]


def test_storm_shape(rendered):
    _, msgs, truth, _ = rendered
    (t,) = truth
    start = datetime.fromisoformat(t["start"].replace("Z", "+00:00"))
    replies = [m for m in msgs if m.message_id in t["message_ids"][1:]]
    assert t["repliers"] >= 10 and len({m.sender for m in replies}) == t["repliers"]
    assert all(start <= m.time <= start + timedelta(minutes=60) for m in replies)
    assert all(t["list"] in m.recipients for m in replies)
    root = t["root_message_id"]
    assert all(m.in_reply_to for m in replies) and any(m.in_reply_to == root for m in replies)
    subjects = {m.subject for m in replies}
    assert subjects & {"RE: test", "Re: test", "AW: test", "SV: test"}


def test_lines_are_time_ordered_and_well_formed(rendered):
    *_, lines = rendered
    assert all(LINE.match(line) for line in lines), [x for x in lines if not LINE.match(x)][:3]
    stamps = [datetime.strptime("2016 " + line[:15], "%Y %b %d %H:%M:%S") for line in lines]
    assert stamps == sorted(stamps)


def test_rfc3339_microseconds_are_ordered_and_zoned():
    site, msgs, _ = scenario(list_size=120, repliers=10)
    lines = list(render_postfix(site, msgs, seed=1, timestamps="rfc3339", tz="Europe/London"))
    stamps = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines]
    assert stamps == sorted(stamps)
    assert lines[0][26:32] == "+00:00"  # November: GMT
    site, msgs, _ = scenario(list_size=120, repliers=10)
    for m in msgs:
        m.time += timedelta(days=200)  # June: BST
    assert next(render_postfix(site, msgs, timestamps="rfc3339", tz="Europe/London"))[26:32] \
        == "+01:00"


def test_queue_ids_unique_and_every_message_complete(rendered):
    _, msgs, _, lines = rendered
    groups = by_queue_id(lines)
    for qid, texts in groups.items():
        assert sum(t.startswith("message-id=") for t in texts) == 1, qid
        assert sum(t.startswith("from=<") and "nrcpt=" in t for t in texts) >= 1, qid
        assert texts[-1] == "removed" and texts.count("removed") == 1, qid
        assert any(t.startswith("to=<") for t in texts), qid
    mids = {t[12:-1] for texts in groups.values() for t in texts if t.startswith("message-id=")}
    accepted = [m for m in msgs if not m.reject]
    assert all(m.message_id in mids for m in accepted if m.message_id)  # "" = MTA adds one
    client_or_pickup = sum(1 for texts in groups.values()
                           if texts[0].startswith(("client=", "uid=")))
    assert client_or_pickup == len(accepted)  # the others are bounce notifications
    rejects = [m for m in msgs if m.reject in ("rbl", "relay", "unknown_user")]
    assert sum("NOQUEUE: reject: RCPT from" in line for line in lines) == len(rejects)


def test_header_checks_and_list_expansion_lines(rendered):
    _, _, truth, lines = rendered
    text = "\n".join(lines)
    assert re.search(r"cleanup\[\d+\]: \w+: info: header Subject: test from \S+; "
                     r"from=<[^>]+> to=<all\.staff@nhs\.example> proto=ESMTP helo=<", text)
    assert re.search(r"info: header In-Reply-To: <[^>]+> from ", text)
    assert re.search(r"info: header References: <[^>]+>", text)
    assert "=?UTF-8?" in text
    assert re.search(r"qmgr\[\d+\]: \w+: from=<[^>]*>, size=\d+, nrcpt=400 \(queue active\)", text)
    assert re.search(r"lmtp\[\d+\]: \w+: to=<[^>]+>, orig_to=<all\.staff@nhs\.example>, "
                     r"relay=mailstore\d\.nhs\.example\[10\.1\.0\.\d+\]:24, delay=[\d.]+, "
                     r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(250 ", text)
    assert re.search(r"bounce\[\d+\]: \w+: sender non-delivery notification: \w+$", text, re.M)
    assert re.search(r"disconnect from \S+ ehlo=\d mail=1 rcpt=\d+ data=1 quit=1 commands=\d+",
                     text) or "starttls=1" in text


def test_rfc3164_day_is_space_padded():
    rng = random.Random(3)
    site = make_site(rng)
    msgs, _ = background(site, rng, utc(2016, 11, 4), 20)
    lines = list(render_postfix(site, msgs))
    assert lines and all(re.match(r"Nov  [45] \d\d:\d\d:\d\d mx1 ", line) for line in lines)
    assert lines[0].startswith("Nov  4 ")


def test_long_queue_ids_and_two_hosts():
    site, msgs, truth = scenario(list_size=120, repliers=10)
    lines = list(render_postfix(site, msgs, hosts=("mx1", "lists1"), long_queue_ids=True))
    qid = re.compile(r"\]: ([0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,}z\w+): ")
    assert sum(bool(qid.search(line)) for line in lines) > len(lines) // 2
    relayed = [re.search(r"mx1 postfix/smtp\[\d+\]: (\w+): to=<all\.staff@[^>]+>, "
                         r"relay=lists1\.nhs\.example\[[\d.]+\]:25, .*queued as (\w+)\)$", line)
               for line in lines]
    relayed = [m for m in relayed if m]
    assert len(relayed) == truth[0]["messages"]
    mid_of = {m.group(1): m.group(2) for line in lines
              if (m := re.search(r"\]: (\w+): message-id=<([^>]+)>", line))}
    assert all(mid_of[r.group(1)] == mid_of[r.group(2)] for r in relayed)
    assert any(line.startswith(("Nov 14", "Nov 15")) and " lists1 postfix/lmtp[" in line
               for line in lines)


def test_gzip_and_plain_writers_stream_the_same_lines(tmp_path: Path, rendered):
    site, msgs, _ = scenario()
    n = write_postfix(tmp_path / "mail.log.gz", site, msgs, seed=7)
    raw = (tmp_path / "mail.log.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert read_lines(tmp_path / "mail.log.gz") == rendered[3] and n == len(rendered[3])
    site, msgs, _ = scenario()
    write_postfix(tmp_path / "mail.log", site, msgs, seed=7)
    assert (tmp_path / "mail.log").read_text() == gzip.decompress(raw).decode()


def test_sample_truth_is_what_the_generator_builds():
    committed = Path(sample_logs.OUT) / "truth.json"
    if not committed.exists():
        pytest.skip("sample_logs not generated")
    assert json.loads(committed.read_text()) == sample_logs.build()[3]


def test_plan_has_one_final_delivery_per_expanded_recipient_and_postfix_delays():
    from detector.simulate import count_final, expand, plan_delivery
    from detector.simulate.postfix_text import format_tv

    site, msgs, truth = scenario(list_size=120, repliers=10)
    reply = next(m for m in msgs if m.message_id == truth[0]["message_ids"][1])
    final = [d for d in plan_delivery(site, reply).deliveries if d.status != "deferred"]
    expected = expand(site, reply)
    assert sorted((d.recipient, d.orig_to or "") for d in final) == sorted(
        (a, o or "") for a, o in expected)
    assert len(final) == count_final(site, reply) == len(reply.recipients) - 1 + 120
    # format_tv: 2 significant digits, at most 2 decimals, no trailing zeros
    assert [format_tv(us) for us in (520_000, 1_130_000, 12_600_000, 4_000, 0, 200_000)] == [
        "0.52", "1.1", "13", "0", "0", "0.2"]


# ---- storms larger than their list, and storms made on demand ---------------------------
def _final_lines(lines: list[str], ids: set[str]) -> int:
    """Final-status delivery lines (sent or bounced) of the messages with these ids."""
    qids = {m.group(1) for line in lines
            if (m := re.search(rf"\]: ({QID}): message-id=<([^>]+)>", line)) and m.group(2) in ids}
    return sum(1 for line in lines
               if re.search(rf"\]: ({QID}): to=<", line) and line.split("]: ")[1][:10] in qids
               and (" status=sent " in line or " status=bounced " in line))


def test_repliers_may_outnumber_the_list():
    rng = random.Random(4)
    site = make_site(rng, "nhs.example")
    msgs, (t,) = storm(site, rng, DAY + timedelta(hours=10), list_size=20, repliers=60,
                       replies=150)
    members = set(site.lists[t["list"]])
    replies = [m for m in msgs if m.message_id in set(t["message_ids"][1:])]
    senders = {m.sender for m in replies}
    assert (t["replies"], t["repliers"], len(replies), len(senders)) == (150, 60, 150, 60)
    # every member but the author answers; the others are site people off the list
    assert senders & members == members - {t["root_sender"]}
    assert t["repliers_on_list"] == 19 and t["repliers_off_list"] == 41
    assert all(s in site.users and s.endswith("@nhs.example") for s in senders - members)
    assert t["repeat_replies"] == 90
    assert all(m.recipients[-1] == t["list"] for m in replies)
    lines = list(render_postfix(site, msgs, seed=4))
    assert _final_lines(lines, set(t["message_ids"])) == t["deliveries"]


def test_a_large_storm_streams_the_same_messages_on_every_pass(monkeypatch):
    from detector.simulate import replies as replies_mod
    from detector.simulate.stream import Mail

    monkeypatch.setattr(replies_mod, "EAGER_LIMIT", 30)
    rng = random.Random(5)
    site = make_site(rng, "nhs.example")
    bg, _ = background(site, rng, DAY, 200)
    mail, (t,) = storm(site, rng, DAY + timedelta(hours=9), list_size=40, repliers=25,
                       replies=80)
    assert isinstance(mail, Mail) and len(mail) == 1 + 80 + 4  # root, replies, auto-replies
    first, second = list(mail), list(mail)
    assert [m.message_id for m in first] == [m.message_id for m in second]
    assert [m.time for m in first] == sorted(m.time for m in first)
    assert t["messages"] == 81 and t["end"] == max(m.time for m in first).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    mail.add(bg)
    # the renderer reads a Mail as it comes; the same messages as a list render the same
    lines = list(render_postfix(site, mail, seed=5))
    assert lines == list(render_postfix(site, list(mail), seed=5))
    ids = {m.message_id for m in first if m.message_id and m.sender == m.sender.lower()
           and m.time >= datetime.fromisoformat(t["start"].replace("Z", "+00:00"))
           and (m.in_reply_to or m.message_id == t["root_message_id"])
           and t["list"] in m.recipients}
    assert len(ids) == 81 and _final_lines(lines, ids) == t["deliveries"]


def test_simulate_cli_accepts_more_repliers_than_members(tmp_path: Path):
    from click.testing import CliRunner

    from detector.cli import main

    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path), "--list-size", "10",
                                       "--repliers", "40", "--replies", "60",
                                       "--background", "50"])
    assert result.exit_code == 0, result.output
    (t,) = json.loads((tmp_path / "truth.json").read_text())["incidents"]
    assert (t["list_size"], t["repliers"], t["replies"]) == (10, 40, 60)
    assert (t["repliers_on_list"], t["repliers_off_list"]) == (9, 31)
    bad = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path), "--repliers", "40",
                                    "--replies", "39"])
    assert bad.exit_code == 2 and "fewer than --repliers" in bad.output


# ---- threshold days: what the simulator injects, checked without the detector -----------
def _threshold_day(name: str):
    from detector.simulate.day import Options, build_day

    return build_day([name], seed=2, options=Options(background=50))


def _replies_of(msgs, list_address: str):
    return sorted((m for m in msgs if m.in_reply_to and list_address in m.recipients),
                  key=lambda m: m.time)


def test_reply_storm_threshold_days_sit_on_the_rules_thresholds():
    from detector.simulate.thresholds import limits

    x = limits()
    site, msgs, (t,) = _threshold_day("reply_storm_at_threshold")
    assert (t["repliers"], t["list_size"]) == (x.reply_senders, x.reply_audience)
    assert t["root_sender"] in t["replier_addresses"]  # every post counts without subjects
    site, msgs, truth = _threshold_day("reply_storm_one_replier_short")
    (lst,) = [a for a in site.lists if a.startswith("all.staff@")]
    posters = {m.sender for m in msgs if lst in m.recipients and not m.is_auto}
    assert truth == [] and len(posters) == x.reply_senders - 1
    site, msgs, _ = _threshold_day("reply_storm_list_one_short")
    assert len(site.lists[lst]) == x.reply_audience - 1
    for name, sign in (("reply_storm_spread_inside", -1), ("reply_storm_spread_outside", 1)):
        site, msgs, _ = _threshold_day(name)
        replies = _replies_of(msgs, lst)
        assert len(replies) == len({m.sender for m in replies}) == x.reply_senders
        span = replies[-1].time - replies[0].time
        assert abs(span - x.reply_window - sign * timedelta(minutes=1)) < timedelta(
            milliseconds=1), name


def test_auto_and_bounce_threshold_days_sit_on_the_rules_thresholds():
    from detector.simulate.delivery import members
    from detector.simulate.thresholds import limits

    x = limits()
    site, msgs, (t,) = _threshold_day("auto_storm_at_threshold")
    assert (t["auto_senders"], t["auto_messages"], t["list_size"]) == (
        x.auto_senders, max(x.auto_senders, x.auto_messages), x.auto_audience)
    site, msgs, truth = _threshold_day("auto_storm_one_sender_short")
    autos = [m for m in msgs if m.is_auto and m.sender
             and any(r.startswith("all.managers@") for r in m.recipients)]
    assert truth == [] and len({m.sender for m in autos}) == x.auto_senders - 1
    assert len(autos) >= x.auto_messages
    site, msgs, (t,) = _threshold_day("bounce_storm_at_threshold")
    assert t["bounced"] == x.bounces
    assert sum(m in site.gone for m in members(site, t["list"])) == x.bounces
    site, msgs, truth = _threshold_day("bounce_storm_one_short")
    (lst,) = [a for a in site.lists if a.startswith("all.contractors@")]
    assert truth == [] and sum(m in site.gone for m in members(site, lst)) == x.bounces - 1
    for name, sign in (("bounce_storm_spread_inside", -1), ("bounce_storm_spread_outside", 1)):
        site, msgs, _ = _threshold_day(name)
        posts = sorted((m for m in msgs if lst in m.recipients), key=lambda m: m.time)
        assert len(posts) == 2 and posts[1].time - posts[0].time == (
            x.bounce_window + sign * timedelta(minutes=1))
        assert 2 * sum(m in site.gone for m in members(site, lst)) >= x.bounces
        assert sum(m in site.gone for m in members(site, lst)) < x.bounces
