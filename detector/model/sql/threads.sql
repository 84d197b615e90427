-- Stage 6 of the model (after model.sql): threads, one row per thread of logical
-- messages. Its own script, as an incremental build (build.py) runs it again over the
-- threads that new messages joined or left, not over the whole table.
CREATE OR REPLACE TABLE threads AS
SELECT
    thread_id,
    arg_min(list, (first_seen, message_uid)) AS list,
    arg_min(thread_subject, (first_seen, message_uid)) AS subject,
    arg_min(message_id, (first_seen, message_uid)) AS root_message_id,
    min(first_seen) AS first_ts,
    max(coalesce(last_delivery, last_seen)) AS last_ts,
    count(*) AS messages,
    count(*) FILTER (WHERE is_reply) AS replies,
    count(DISTINCT sender) AS senders,
    CAST(sum(deliveries) AS BIGINT) AS deliveries
FROM logical_messages
GROUP BY thread_id;

