-- bounce_storm: compiled from rules/bounce_storm.yaml
-- bound parameters, in order:
--   1. 3600  window (seconds)
--   2. 200  min_bounces
WITH feed AS (
    SELECT
        coalesce(list, sender) AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced,
        coalesce(CASE WHEN sender IS NOT NULL THEN 1 ELSE 0 END, 0) AS m_n_sender_messages,
        coalesce(deliveries, 0) AS m_sum_deliveries,
        coalesce(bounced, 0) AS m_sum_bounced
    FROM logical_messages
    WHERE bounced > 0 AND NOT is_auto AND coalesce(list, sender) IS NOT NULL
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
        sum(m_n_sender_messages) OVER r AS upto_n_sender_messages,
        sum(m_sum_deliveries) OVER r AS upto_sum_deliveries,
        sum(m_sum_bounced) OVER r AS upto_sum_bounced
    FROM linked
    WINDOW r AS (PARTITION BY group_key ORDER BY t
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
before AS (  -- per group and time: sums over the messages before it, and its timestamp
    SELECT group_key, t, min(ts) AS ts,
        sum(sum(is_followed)) OVER b - sum(is_followed) AS followed_before,
        sum(sum(m_n_sender_messages)) OVER b - sum(m_n_sender_messages) AS before_n_sender_messages,
        sum(sum(m_sum_deliveries)) OVER b - sum(m_sum_deliveries) AS before_sum_deliveries,
        sum(sum(m_sum_bounced)) OVER b - sum(m_sum_bounced) AS before_sum_bounced
    FROM linked
    GROUP BY group_key, t
    WINDOW b AS (PARTITION BY group_key ORDER BY t)
),
windows AS (
    SELECT u.*, b.ts AS window_start,
        u.repeats_upto - b.followed_before AS repeats,
        u.upto_n_sender_messages - b.before_n_sender_messages AS n_sender_messages,
        u.upto_sum_deliveries - b.before_sum_deliveries AS sum_deliveries,
        u.upto_sum_bounced - b.before_sum_bounced AS sum_bounced
    FROM upto u
    JOIN before b ON b.group_key = u.group_key AND b.t = u.window_t0
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, window_start,
        sum_bounced AS bounces,
        sum_deliveries AS deliveries,
        n_sender_messages - repeats AS distinct_senders,
        max_recipients AS audience
    FROM windows
)
SELECT * FROM hits
WHERE bounces >= ?
