-- reply_storm: compiled from rules/reply_storm.yaml
-- bound parameters, in order:
--   1. 3600  window (seconds)
--   2. 10  min_senders
--   3. 2500  min_audience
WITH feed AS (
    SELECT
        coalesce(list, thread_id) AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced
    FROM logical_messages
    WHERE NOT is_auto AND (is_reply OR subject IS NULL) AND coalesce(list, thread_id) IS NOT NULL
),
framed AS (
    SELECT group_key, message_uid, ts, t, sender,
        min(ts) OVER w AS window_start,
        min(t) OVER w AS window_t0,
        count(sender) OVER w AS n_sender_messages,
        sum(deliveries) OVER w AS sum_deliveries,
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
followed_before AS (  -- per group and time: followed messages strictly before it
    SELECT group_key, t,
        sum(sum(is_followed)) OVER (PARTITION BY group_key ORDER BY t)
            - sum(is_followed) AS followed
    FROM linked
    GROUP BY group_key, t
),
windows AS (
    SELECT l.*,
        sum(l.is_repeat) OVER (PARTITION BY l.group_key ORDER BY l.t
                               RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            - f.followed AS repeats
    FROM linked l
    JOIN followed_before f ON f.group_key = l.group_key AND f.t = l.window_t0
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, window_start,
        n_sender_messages - repeats AS distinct_senders,
        max_recipients AS audience,
        sum_deliveries AS deliveries
    FROM windows
)
SELECT * FROM hits
WHERE distinct_senders >= ? AND audience >= ?
