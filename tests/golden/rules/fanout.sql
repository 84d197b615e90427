-- fanout: compiled from rules/fanout.yaml
-- bound parameters, in order:
--   1. 1000  min_deliveries
--   2. 20.0  min_amplification
--   3. 20.0  min_baseline_ratio
--   4. 3  min_history
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
        deliveries AS deliveries,
        deliveries / greatest(submitted, 1) AS amplification,
        deliveries / greatest(sender_median, 1) AS baseline_ratio,
        history AS history,
        1 AS distinct_senders,
        recipients AS audience
    FROM base
)
SELECT * FROM hits
WHERE deliveries >= ? AND amplification >= ? AND baseline_ratio >= ? AND history >= ?
