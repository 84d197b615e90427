-- Threads, one row per thread of logical messages: a view summed when read, not a table
-- kept. A thread is a list and a subject and may last for months; a table of its sums
-- would be summed again over all its messages whenever one message joined it, so that a
-- night would cost what the warehouse holds, not what it read. (A template: see model.sql.)
CREATE OR REPLACE VIEW threads AS
SELECT
    thread_id,
    {{ arg_min('list', 'first_seen', 'message_uid') }} AS list,
    {{ arg_min('thread_subject', 'first_seen', 'message_uid') }} AS subject,
    {{ arg_min('message_id', 'first_seen', 'message_uid') }} AS root_message_id,
    min(first_seen) AS first_ts,
    max(coalesce(last_delivery, last_seen)) AS last_ts,
    count(*) AS messages,
    count(*) FILTER (WHERE is_reply) AS replies,
    count(DISTINCT sender) AS senders,
    CAST(sum(deliveries) AS BIGINT) AS deliveries
FROM logical_messages
GROUP BY thread_id;
