-- mail_loop: compiled from rules/mail_loop.yaml
-- bound parameters, in order:
--   1. 3600  window (seconds)
--   2. 30  min_messages
--   3. 10  min_auto_messages
--   4. 2  min_senders
WITH bound AS (
    SELECT CAST(? AS BIGINT) * 1000000 AS w
),
feed AS (
    SELECT
        least(sender, to_address) || ' <-> ' || greatest(sender, to_address) AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced,
        coalesce(1, 0) AS m_n_messages,
        coalesce(CASE WHEN is_auto OR no_subject THEN 1 ELSE 0 END, 0) AS m_n_unknown_or_auto,
        coalesce(CASE WHEN sender IS NOT NULL THEN 1 ELSE 0 END, 0) AS m_n_sender_messages,
        coalesce(deliveries, 0) AS m_sum_deliveries,
        recipients AS m_max_recipients
    FROM logical_messages
    WHERE to_address IS NOT NULL AND sender <> '' AND least(sender, to_address) || ' <-> ' || greatest(sender, to_address) IS NOT NULL
),
numbered AS (
    SELECT f.*, bound.w, f.t // bound.w AS block,
        row_number() OVER (PARTITION BY f.group_key ORDER BY f.t, f.message_uid) AS n
    FROM feed f
    CROSS JOIN bound
),
probed AS (  -- per group and anchor time: its messages at or before anchor - window
    SELECT group_key, anchor_t,
        place - row_number() OVER (PARTITION BY group_key ORDER BY anchor_t) AS n_before
    FROM (
        SELECT group_key, anchor_t, probe,
            row_number() OVER (PARTITION BY group_key ORDER BY stream_t, probe) AS place
        FROM (SELECT group_key, t AS stream_t, 0 AS probe, NULL AS anchor_t FROM numbered
              UNION ALL
              SELECT DISTINCT group_key, t - w AS stream_t, 1 AS probe, t AS anchor_t
              FROM numbered) stream
    ) placed
    WHERE probe = 1
),
framed AS (  -- each message with the time of its window's first message
    SELECT a.*, f.t AS window_t0
    FROM numbered a
    JOIN probed p ON p.group_key = a.group_key AND p.anchor_t = a.t
    JOIN numbered f ON f.group_key = a.group_key AND f.n = p.n_before + 1
),
linked AS (
    -- a sender's messages in order (ties by uid, so that both directions agree)
    SELECT *,
        CASE WHEN sender IS NOT NULL AND lag(t) OVER s >= window_t0
             THEN 1 ELSE 0 END AS m_repeats,
        CASE WHEN sender IS NOT NULL AND t >= lead(window_t0) OVER s
             THEN 1 ELSE 0 END AS m_followed
    FROM framed
    WINDOW s AS (PARTITION BY group_key, sender ORDER BY t, message_uid)
),
times AS (  -- per group and time: what its messages add up to
    SELECT group_key, t, block, min(ts) AS ts,
        sum(m_repeats) AS at_repeats, sum(m_followed) AS at_followed,
        sum(m_n_messages) AS at_n_messages,
        sum(m_n_unknown_or_auto) AS at_n_unknown_or_auto,
        sum(m_n_sender_messages) AS at_n_sender_messages,
        sum(m_sum_deliveries) AS at_sum_deliveries,
        max(m_max_recipients) AS at_max_recipients
    FROM linked
    GROUP BY group_key, t, block
),
running AS (  -- per group and time: sums over the times before it, maxima in its block
    SELECT *,
        (sum(at_repeats) OVER g) - at_repeats AS before_repeats,
        (sum(at_followed) OVER g) - at_followed AS before_followed,
        (sum(at_n_messages) OVER g) - at_n_messages AS before_n_messages,
        (sum(at_n_unknown_or_auto) OVER g) - at_n_unknown_or_auto AS before_n_unknown_or_auto,
        (sum(at_n_sender_messages) OVER g) - at_n_sender_messages AS before_n_sender_messages,
        (sum(at_sum_deliveries) OVER g) - at_sum_deliveries AS before_sum_deliveries,
        max(at_max_recipients) OVER (PARTITION BY group_key, block ORDER BY t) AS max_recipients_from_block_start,
        max(at_max_recipients) OVER (PARTITION BY group_key, block ORDER BY t DESC) AS max_recipients_to_block_end
    FROM times
    WINDOW g AS (PARTITION BY group_key ORDER BY t)
),
windows AS (
    SELECT l.*, s.ts AS window_start,
        e.before_repeats + e.at_repeats - s.before_followed AS repeats,
        e.before_n_messages + e.at_n_messages - s.before_n_messages AS n_messages,
        e.before_n_unknown_or_auto + e.at_n_unknown_or_auto - s.before_n_unknown_or_auto AS n_unknown_or_auto,
        e.before_n_sender_messages + e.at_n_sender_messages - s.before_n_sender_messages AS n_sender_messages,
        e.before_sum_deliveries + e.at_sum_deliveries - s.before_sum_deliveries AS sum_deliveries,
        CASE WHEN s.block < e.block THEN greatest(e.max_recipients_from_block_start, s.max_recipients_to_block_end) ELSE e.max_recipients_from_block_start END AS max_recipients
    FROM linked l
    JOIN running e ON e.group_key = l.group_key AND e.t = l.t
    JOIN running s ON s.group_key = l.group_key AND s.t = l.window_t0
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, window_start,
        n_messages AS messages,
        n_unknown_or_auto AS unknown_or_auto,
        n_sender_messages - repeats AS distinct_senders,
        sum_deliveries AS deliveries,
        max_recipients AS audience
    FROM windows
)
SELECT * FROM hits
WHERE messages >= ? AND unknown_or_auto >= ? AND distinct_senders >= ?
