"""What-if replay against a small storm computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detector.whatif import EXCHANGE_ONLINE, Reply, replay, rule_policy

T0 = datetime(2016, 11, 14, 10, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _storm() -> list[Reply]:
    # root at 10:00; twelve reply-alls to 3,000 at 10:01..10:12, the 4th by s3 again;
    # a small reply (100 recipients) at 10:03; a late reply-all at 17:30, after any block
    senders = ["s1", "s2", "s3", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11"]
    rows = [Reply(_at(0), "root", 3000, 3000, True)]
    rows += [Reply(_at(i + 1), s, 3000, 3000, False) for i, s in enumerate(senders)]
    rows += [Reply(_at(3.5), "s1", 100, 100, False), Reply(_at(450), "s12", 3000, 3000, False)]
    return rows


def test_exchange_online_counts_reply_alls_and_blocks_for_six_hours() -> None:
    result = replay(EXCHANGE_ONLINE, _storm())
    # the 10th reply-all to >= 2,500 recipients is the one at 10:10
    assert result.fires_at == _at(10)
    assert result.messages_before == 1 + 10 + 1  # root, ten replies, the small one
    # blocked: 10:11 and 10:12; the 17:30 reply is after the six hours
    assert result.blocked_messages == 2
    assert result.prevented_deliveries == 6000
    assert result.deliveries == 3000 * 14 + 100
    assert result.prevented_share == round(6000 / 42100, 3)


def test_the_rules_own_thresholds_count_distinct_repliers() -> None:
    policy = rule_policy("reply_storm", 10, 2500, 3600)
    result = replay(policy, _storm())
    # s3 replied twice: the 10th distinct replier (s10) comes at 10:11
    assert result.fires_at == _at(11)
    assert result.blocked_messages == 1
    assert result.prevented_deliveries == 3000


def test_replies_spread_beyond_the_window_never_fire() -> None:
    rows = [Reply(_at(0), "root", 3000, 3000, True)]
    rows += [Reply(_at(7 * (i + 1)), f"s{i}", 3000, 3000, False) for i in range(12)]
    result = replay(EXCHANGE_ONLINE, rows)  # at most 8 replies in any 60 minutes
    assert result.fires_at is None
    assert result.prevented_deliveries == 0
