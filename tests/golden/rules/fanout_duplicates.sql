-- fanout_duplicates: compiled from rules/fanout_duplicates.yaml
-- bound parameters, in order:
--   1. 500  min_duplicates
WITH base AS (
    SELECT
        message_uid AS group_key, message_uid, first_seen AS ts, sender, is_auto, subject,
        deliveries, recipients, submitted, bounced, returned, max_passes, loop_bounces,
        count(*) OVER (PARTITION BY sender) - 1 AS history,
        median(deliveries) OVER (PARTITION BY sender) AS sender_median
    FROM logical_messages
    WHERE NOT is_auto
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, ts AS window_start,
        greatest(deliveries - recipients, 0) AS duplicates,
        deliveries AS deliveries,
        1 AS distinct_senders,
        recipients AS audience
    FROM base
)
SELECT * FROM hits
WHERE duplicates >= ?
