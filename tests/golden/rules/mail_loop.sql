-- mail_loop: compiled from rules/mail_loop.yaml
-- bound parameters, in order:
--   1. 3600  window (seconds)
--   2. 30  min_messages
--   3. 10  min_auto_messages
--   4. 2  min_senders
WITH feed AS (
    SELECT
        least(sender, to_address) || ' <-> ' || greatest(sender, to_address) AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced,
        coalesce(1, 0) AS m_n_messages,
        coalesce(CASE WHEN is_auto OR no_subject THEN 1 ELSE 0 END, 0) AS m_n_unknown_or_auto,
        coalesce(CASE WHEN sender IS NOT NULL THEN 1 ELSE 0 END, 0) AS m_n_sender_messages,
        coalesce(deliveries, 0) AS m_sum_deliveries
    FROM logical_messages
    WHERE to_address IS NOT NULL AND sender <> '' AND least(sender, to_address) || ' <-> ' || greatest(sender, to_address) IS NOT NULL
),
framed AS (
    SELECT *,
        first_value(t) OVER w AS window_t0,
        max(recipients) OVER w AS max_recipients
    FROM feed
    WINDOW w AS (PARTITION BY group_key ORDER BY t
                 RANGE BETWEEN CAST(? AS BIGINT) * 1000000 - 1 PRECEDING AND CURRENT ROW)
),
linked AS (
    -- a sender's messages in order (ties by uid, so that both directions agree)
    SELECT *,
        CASE WHEN sender IS NOT NULL AND lag(t) OVER s >= window_t0
             THEN 1 ELSE 0 END AS is_repeat,
        CASE WHEN sender IS NOT NULL AND t >= lead(window_t0) OVER s
             THEN 1 ELSE 0 END AS is_followed
    FROM framed
    WINDOW s AS (PARTITION BY group_key, sender ORDER BY t, message_uid)
),
upto AS (  -- sums over the group's messages up to each one, its ties included
    SELECT *,
        sum(is_repeat) OVER r AS repeats_upto,
        sum(m_n_messages) OVER r AS upto_n_messages,
        sum(m_n_unknown_or_auto) OVER r AS upto_n_unknown_or_auto,
        sum(m_n_sender_messages) OVER r AS upto_n_sender_messages,
        sum(m_sum_deliveries) OVER r AS upto_sum_deliveries
    FROM linked
    WINDOW r AS (PARTITION BY group_key ORDER BY t
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
before AS (  -- per group and time: sums over the messages before it, and its timestamp
    SELECT group_key, t, min(ts) AS ts,
        sum(sum(is_followed)) OVER b - sum(is_followed) AS followed_before,
        sum(sum(m_n_messages)) OVER b - sum(m_n_messages) AS before_n_messages,
        sum(sum(m_n_unknown_or_auto)) OVER b - sum(m_n_unknown_or_auto) AS before_n_unknown_or_auto,
        sum(sum(m_n_sender_messages)) OVER b - sum(m_n_sender_messages) AS before_n_sender_messages,
        sum(sum(m_sum_deliveries)) OVER b - sum(m_sum_deliveries) AS before_sum_deliveries
    FROM linked
    GROUP BY group_key, t
    WINDOW b AS (PARTITION BY group_key ORDER BY t)
),
windows AS (
    SELECT u.*, b.ts AS window_start,
        u.repeats_upto - b.followed_before AS repeats,
        u.upto_n_messages - b.before_n_messages AS n_messages,
        u.upto_n_unknown_or_auto - b.before_n_unknown_or_auto AS n_unknown_or_auto,
        u.upto_n_sender_messages - b.before_n_sender_messages AS n_sender_messages,
        u.upto_sum_deliveries - b.before_sum_deliveries AS sum_deliveries
    FROM upto u
    JOIN before b ON b.group_key = u.group_key AND b.t = u.window_t0
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
