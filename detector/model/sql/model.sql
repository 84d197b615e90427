-- The model: events -> messages, deliveries, logical_messages, threads.
-- A Jinja2 template of SQL that DuckDB and Spark read alike, over tables Parquet can hold:
-- detector/model/build.py's model_statements() renders it for an engine. Where the two
-- spell a construct apart, a call in double braces renders detector/dialect.py's form
-- (hash64, arg_min, regexp_like...); thread_subject(), has_reply_prefix() and
-- is_auto_subject() expand the patterns of detector/model/subjects.py, list_of_copy()
-- and root_ref() are in dialect.py. Regex patterns are named values (build.py's PATTERNS), never inline
-- literals: the engines quote backslashes differently. Each statement is
-- CREATE OR REPLACE TABLE|VIEW name AS <select>, or DROP VIEW name.

-- Stage 1. Queue-id events, numbered by generation: Postfix reuses a queue id after
-- 'removed', so (host, queue_id, generation) names one message instance. A window over
-- every event would sort them all; almost every id is removed at most once, so the
-- generation is found by comparing with its one removal, and only ids removed more than
-- once pay for the window. _qev is a view: each stage reads only the columns it needs.
-- needs kinds: queue_removed
CREATE OR REPLACE TABLE _removals AS
SELECT host, queue_id, count(*) AS removals, max(ts) AS removed_at
FROM events
WHERE kind = 'queue_removed' AND queue_id IS NOT NULL
GROUP BY host, queue_id;

-- generations of the rare ids removed more than once, by a window over their events only
CREATE OR REPLACE TABLE _generations AS
SELECT e.source_file, e.line_no,
    coalesce(sum(CASE WHEN e.kind = 'queue_removed' THEN 1 END)
        OVER (PARTITION BY e.host, e.queue_id ORDER BY e.ts, e.source_file, e.line_no
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS generation
FROM events e
JOIN _removals r ON r.host = e.host AND r.queue_id = e.queue_id AND r.removals > 1;

-- _settled (host, queue_id, first_generation) is made by build.py: an incremental build
-- reads a reused queue id's events from after its last use it keeps as stored (removed
-- long before the new lines), and numbers the generations it reads from the one after;
-- a full build's is empty.
CREATE OR REPLACE VIEW _qev AS
SELECT
    e.*,
    -- the key is a 64-bit hash: joins and groups on it are far cheaper than on text
    {{ key64('e.host', 'e.queue_id', 'generation') }} AS message_key
FROM (
    SELECT e.*, coalesce(s.first_generation, 0) + CASE
        WHEN g.generation IS NOT NULL THEN g.generation
        WHEN r.removals IS NULL OR e.ts <= r.removed_at THEN 0
        ELSE 1
    END AS generation
    FROM events e
    LEFT JOIN _removals r ON r.host = e.host AND r.queue_id = e.queue_id
    LEFT JOIN _generations g ON g.source_file = e.source_file AND g.line_no = e.line_no
    LEFT JOIN _settled s ON s.host = e.host AND s.queue_id = e.queue_id
    WHERE e.queue_id IS NOT NULL
) e;

-- Stage 2. One row per message per host. Postfix spreads a message's facts over several
-- lines (cleanup, qmgr, header_checks, smtpd); other formats log them on one 'received'
-- line (docs/formats.md lists the kinds the model reads).
-- The instances and the hand-overs between those that share a Message-ID are working
-- tables, not CTEs of messages: messages reads them many times over, and Spark computes a
-- CTE again at each use (and each round of the recursion below).
CREATE OR REPLACE TABLE _inst AS
SELECT
    message_key,
    max(host) AS host,
    max(queue_id) AS queue_id,
    max(message_id) FILTER (WHERE kind IN ('cleanup_message_id', 'received'))
        AS message_id,
    coalesce(
        max(sender) FILTER (WHERE kind IN ('qmgr_from', 'received')),
        max(sender) FILTER (WHERE kind IN ('pickup', 'qmgr_expired', 'header_subject'))
    ) AS sender,
    max(subject) FILTER (WHERE kind IN ('header_subject', 'received')) AS subject,
    max(in_reply_to) FILTER (WHERE kind IN ('header_in_reply_to', 'received'))
        AS in_reply_to,
    max(refs) FILTER (WHERE kind IN ('header_references', 'received')) AS refs,
    max(size) FILTER (WHERE kind IN ('qmgr_from', 'received')) AS size,
    max(nrcpt) FILTER (WHERE kind IN ('qmgr_from', 'received')) AS nrcpt,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    -- the how-manieth use of its queue id on its host, and when it left the queue
    CAST(max(generation) AS BIGINT) AS generation,
    max(ts) FILTER (WHERE kind = 'queue_removed') AS removed_at,
    max(client) FILTER (WHERE kind IN ('smtpd_client', 'received')) AS client,
    -- its arrival is in the log (Postfix logs qmgr from= again at every retry of a
    -- deferred message: that alone is no arrival)
    bool_or(kind IN ('smtpd_client', 'pickup', 'cleanup_message_id', 'received'))
        AS intake_logged
FROM _qev
GROUP BY message_key
HAVING bool_or(kind IN ('smtpd_client', 'pickup', 'cleanup_message_id', 'qmgr_from',
                        'delivery', 'received'));

CREATE OR REPLACE TABLE _split AS
WITH shared AS (
    -- a Message-ID is not proof of one message: scripts, appliances and anonymisers
    -- reuse a fixed one. The few ids whose instances disagree on envelope sender or size
    -- (a list server's copies aside) are looked at instance by instance below.
    -- Instances that agree on sender and on a subject every one of them logged are one
    -- message whatever their sizes: a loop adds a Received header at every pass, a relay
    -- chain its own headers.
    SELECT message_id
    FROM _inst
    WHERE message_id <> '' AND {{ list_of_copy('sender') }} IS NULL
    GROUP BY message_id
    HAVING (min(sender) <> max(sender) OR min(size) <> max(size))
        AND NOT (count(subject) = count(*) AND min(sender) = max(sender)
                 AND min(subject) = max(subject))
)
SELECT i.message_key, i.message_id, i.host, i.queue_id, i.sender, i.size,
    i.first_seen, i.last_seen
FROM _inst i
JOIN shared USING (message_id);

-- hand-overs between them ('queued as'): a relay chain is one message whatever its hops
-- do to the sender (SRS) or the size (headers added)
CREATE OR REPLACE TABLE _handed AS
SELECT DISTINCT a.message_key AS from_key, b.message_key AS to_key
FROM _split a
JOIN _qev d ON d.host = a.host AND d.queue_id = a.queue_id
    AND d.ts BETWEEN a.first_seen AND a.last_seen
JOIN _split b ON b.message_id = a.message_id AND b.queue_id = d.next_queue_id
    AND b.message_key <> a.message_key
WHERE d.kind = 'delivery' AND d.next_queue_id IS NOT NULL;

CREATE OR REPLACE TABLE messages AS
WITH ndr AS (  -- messages the MTA created as non-delivery notices (Postfix's bounce
    -- daemon, Sendmail's DSN): the notice line names the new message's queue id
    SELECT DISTINCT host, next_queue_id AS queue_id
    FROM events
    WHERE kind IN ('bounce_notification', 'dsn') AND next_queue_id IS NOT NULL
), origin AS (  -- each instance's first hop: up the hand-overs (Spark: a fixed depth)
    WITH RECURSIVE up(message_key, origin_key, depth) AS (
        SELECT message_key, message_key, 0 FROM _split
        UNION ALL
        SELECT u.message_key, h.from_key, u.depth + 1
        FROM up u
        JOIN _handed h ON h.to_key = u.origin_key
        WHERE u.depth < 8
    )
    SELECT message_key, {{ arg_max('origin_key', 'depth', 'origin_key') }} AS origin_key
    FROM up
    GROUP BY message_key
), variant AS (
    -- the sender and size a message was first seen with, when both are known (not for a
    -- list server's copy): instances of one id that differ in them are different messages
    SELECT o.message_key, s.message_id, s.first_seen,
        CASE WHEN r.sender IS NOT NULL AND r.size IS NOT NULL
                  AND {{ list_of_copy('r.sender') }} IS NULL
             THEN r.sender || ' ' || {{ cast_string('r.size') }} END AS variant
    FROM origin o
    JOIN _split s USING (message_key)
    JOIN _split r ON r.message_key = o.origin_key
), first_variant AS (
    -- the first message to use the id keeps it as its key, and so do the instances
    -- whose sender or size is unknown
    SELECT message_id, {{ arg_min('variant', 'first_seen', 'variant') }} AS variant
    FROM variant
    WHERE variant IS NOT NULL
    GROUP BY message_id
), uid AS (
    SELECT v.message_key,
        CASE WHEN v.variant IS NULL OR v.variant = f.variant THEN v.message_id
             ELSE v.message_id || ' ' || v.variant END AS message_uid
    FROM variant v
    JOIN first_variant f USING (message_id)
), anonymous_hops AS (
    -- one MTA handing a message to another on the same host ("stat=Sent (Ok: queued as
    -- X)": Sendmail's MSP to the local Postfix, a content filter and back) where one side
    -- logged no Message-ID (Sendmail logs none for the DSNs it makes; Postfix adds its own
    -- to mail from 127.0.0.1 that had none): the two instances are one message. Hops
    -- whose sides both name an id are one message by that id already.
    SELECT DISTINCT d.message_key AS from_key, b.message_key AS to_key,
        coalesce(a.message_id, '') <> '' AS from_named,
        coalesce(b.message_id, '') <> '' AS to_named
    FROM _qev d
    JOIN _inst b ON b.host = d.host AND b.queue_id = d.next_queue_id
        AND b.message_key <> d.message_key
        AND b.first_seen BETWEEN d.ts - INTERVAL 1 HOUR AND d.ts + INTERVAL 1 HOUR
    JOIN _inst a ON a.message_key = d.message_key
    WHERE d.kind = 'delivery' AND d.next_queue_id IS NOT NULL
        AND (coalesce(a.message_id, '') = '' OR coalesce(b.message_id, '') = '')
), adopted AS (
    -- an instance without an id takes the id of the instance it handed the message to
    -- or got it from; between two without, the later takes the earlier's key
    SELECT x.message_key,
        min(coalesce(u.message_uid, nullif(h.message_id, ''),
                     coalesce(h.host, '') || ' ' || h.queue_id || ' ' || h.generation))
            AS message_uid
    FROM (SELECT from_key AS message_key, to_key AS adopt FROM anonymous_hops
          WHERE to_named AND NOT from_named
          UNION ALL
          SELECT to_key, from_key FROM anonymous_hops WHERE NOT to_named) x
    JOIN _inst h ON h.message_key = x.adopt
    LEFT JOIN uid u ON u.message_key = x.adopt
    GROUP BY x.message_key
)
SELECT
    inst.*,
    -- one message across hosts: its Message-ID (told apart by sender and size when it
    -- was reused), else that of the hop it was handed over from or to, else this
    -- instance: also in a log without a host name, where host || ... would be null and
    -- gather every such message in one. By its generation, not message_key: the key is
    -- a hash each engine computes its own way, the uid the same on every engine
    coalesce(uid.message_uid, nullif(inst.message_id, ''), adopted.message_uid,
             coalesce(inst.host, '') || ' ' || inst.queue_id || ' ' || inst.generation)
        AS message_uid,
    {{ thread_subject('subject') }} AS thread_subject,
    coalesce({{ has_reply_prefix('subject') }}, false) OR in_reply_to IS NOT NULL AS is_reply,
    -- an unknown sender (queued before the log starts) is not known to be automatic: the
    -- message stays in the rules that read ordinary mail
    coalesce(sender = '', false) OR coalesce({{ is_auto_subject('subject') }}, false)
        OR ndr.queue_id IS NOT NULL AS is_auto,
    ndr.queue_id IS NOT NULL AS is_local_ndr
FROM _inst AS inst
LEFT JOIN ndr ON ndr.host = inst.host AND ndr.queue_id = inst.queue_id
LEFT JOIN uid USING (message_key)
LEFT JOIN adopted USING (message_key);

DROP TABLE IF EXISTS _handed;
DROP TABLE IF EXISTS _split;
DROP TABLE IF EXISTS _inst;

-- Stage 3. List expansions logged as events of their own (Exchange EXPAND, Sendmail
-- aliases): one row per message, list and member. Postfix and Exim name the list on the
-- delivery line itself (deliveries.list). The expanding host may not be the delivering
-- one, so expansions are keyed by the message across hosts.
-- needs kinds: expansion
CREATE OR REPLACE TABLE expansions AS
SELECT m.message_uid, e.host, e.queue_id, e.orig_to AS list, e.recipient, min(e.ts) AS ts
FROM _qev e
JOIN messages m USING (message_key)
WHERE e.kind = 'expansion' AND e.orig_to IS NOT NULL AND e.recipient IS NOT NULL
GROUP BY ALL;

-- Posts a list server logged (Mailman): they name the list of a message whose MTA log
-- shows only the members. Mailman 2 logs the list's name, not its address; the address is
-- recovered from the envelope sender of the list's own copies (<name>-bounces@domain).
-- needs kinds: list_post
CREATE OR REPLACE TABLE list_posts AS
WITH posts AS (
    SELECT message_id, {{ arg_min('orig_to', 'ts', 'orig_to') }} AS list, {{ arg_min('sender', 'ts', 'sender') }} AS sender,
        min(ts) AS ts, max(nrcpt) AS nrcpt
    FROM events
    WHERE kind = 'list_post' AND message_id IS NOT NULL AND orig_to IS NOT NULL
    GROUP BY message_id
), list_copies AS (
    SELECT message_id, min({{ list_of_copy('sender') }}) AS address
    FROM messages
    WHERE {{ list_of_copy('sender') }} IS NOT NULL AND message_id IS NOT NULL
    GROUP BY message_id
)
SELECT p.message_id,
    CASE WHEN contains(p.list, '@') THEN p.list
         WHEN lower(split_part(c.address, '@', 1)) = lower(p.list) THEN c.address
         ELSE p.list END AS list,
    p.sender, p.ts, p.nrcpt
FROM posts p
LEFT JOIN list_copies c USING (message_id);

-- Stage 4. One row per delivery attempt. A hop hands the message to a host or content
-- filter whose log we also read ('queued as X' and a message X was queued within the
-- hour): the message is counted where it finally lands, not at every hop. A list
-- server's copies (Mailman) go to each member directly: their list is the one the post
-- went to, and the delivery to the list address itself is the hop into the list server.
-- The deliveries of a storm night are millions of rows: build.py writes this view's rows
-- to a Parquet file beside the events (a third faster than a DuckDB table) and the view
-- becomes a read of that file, for the statements below and for analysts.
CREATE OR REPLACE TABLE deliveries AS
WITH queued AS (  -- small: one row per queue id seen
    SELECT queue_id, min(first_seen) AS first_seen, max(first_seen) AS last_seen
    FROM messages
    GROUP BY queue_id
), outermost AS (
    -- nested lists (a group whose members are groups, each expanded in turn): a member
    -- is credited to the list the sender wrote to, as Postfix's orig_to does. Recursive
    -- SQL (Spark would unroll it to a fixed depth).
    WITH RECURSIVE up(message_uid, recipient, list, ts, depth) AS (
        SELECT message_uid, recipient, list, ts, 0 FROM expansions
        UNION ALL
        SELECT u.message_uid, u.recipient, x.list, x.ts, u.depth + 1
        FROM up u
        JOIN expansions x ON x.message_uid = u.message_uid AND x.recipient = u.list
        WHERE u.depth < 8
    )
    SELECT message_uid, recipient, {{ arg_max('list', 'depth', 'list') }} AS list, min(ts) AS ts
    FROM up
    GROUP BY message_uid, recipient
), member_of AS (  -- per instance of an expanded message; a member of two lists is
    -- credited to the first. Small tables joined on the instance key: no cost when the
    -- logs hold no expansions or list posts.
    SELECT m.message_key, x.recipient, {{ arg_min('x.list', 'x.ts', 'x.list') }} AS list
    FROM outermost x
    JOIN messages m USING (message_uid)
    GROUP BY ALL
), posted AS (
    SELECT m.message_key, lp.list
    FROM list_posts lp
    JOIN messages m ON m.message_uid = lp.message_id
)
SELECT
    d.message_key, d.host, d.queue_id, d.ts, d.recipient,
    -- orig_to = recipient: addressed directly; null: the log does not say (Exchange,
    -- Mailman's copies), so a list expansion or post of the same message tells
    CASE WHEN d.orig_to IS NOT NULL THEN nullif(d.orig_to, d.recipient)
         ELSE coalesce(x.list, CASE WHEN lower(d.recipient) <> lower(lp.list) THEN lp.list END)
    END AS list,
    d.status, d.dsn, d.relay, d.delay, d.next_queue_id, d.program,
    coalesce(d.ts BETWEEN q.first_seen - INTERVAL 1 HOUR AND q.last_seen + INTERVAL 1 HOUR,
             false)
        -- CASE, not coalesce(): lower() then runs only on the deliveries of a list post,
        -- not on every recipient of a storm night
        OR CASE WHEN lp.list IS NOT NULL THEN coalesce(lower(d.recipient) = lower(lp.list), false)
                ELSE false END AS is_hop,
    d.source_file, d.line_no
FROM _qev d
LEFT JOIN queued q ON q.queue_id = d.next_queue_id
LEFT JOIN member_of x ON x.message_key = d.message_key AND x.recipient = d.recipient
LEFT JOIN posted lp ON lp.message_key = d.message_key
WHERE d.kind = 'delivery';

-- Stage 5. One row per message across hosts (same Message-ID = same message).
-- uid_key: the message as a 64-bit integer, so that the stages over every delivery join
-- and group on integers only (a working table: logical_messages reads it many times)
CREATE OR REPLACE TABLE _uid_inst AS
SELECT *, {{ hash64('message_uid') }} AS uid_key FROM messages;

-- Each message's recipients and deliveries, and each message with its thread key, are
-- working tables: logical_messages reads them more than once.
CREATE OR REPLACE TABLE _per_msg AS
WITH listed AS (  -- small: the lists a message's deliveries name (hand-overs excluded)
    SELECT i.uid_key, count(DISTINCT d.list) AS lists, min(d.list) AS list
    FROM deliveries d
    JOIN _uid_inst i USING (message_key)
    WHERE NOT d.is_hop AND d.list IS NOT NULL
    GROUP BY i.uid_key
), per_recipient AS (
    -- a copy is a recipient by one route (a list, or written directly): someone on the
    -- list and in Cc gets two copies, and Postfix logs (and delivers) both. The same route
    -- logged on two hosts (an Exchange SEND to a server whose DELIVER we also read) is one
    -- copy. Deferrals are retried: a copy counts as delivered once a final status (not
    -- 'deferred') is logged; a discarded one (Exim's :blackhole:) never is.
    -- A message naming at most one list (nearly all) has at most two routes per recipient,
    -- direct and listed, so one group per message and recipient counts them: a hash of the
    -- address (grouping 8M deliveries on 64-bit integers is twice as fast as on text, and
    -- stays in memory; two of a million addresses collide with odds of about 1 in 37
    -- million), and the facts of each route as bits OR-ed over its lines (one aggregate,
    -- not one per fact and route): 1 the route exists, 2 delivered, 4 bounced, 8 looped
    -- (5.4.6: "mail forwarding loop", "too many hops", RFC 3463 routing loop); times 16
    -- for the listed route. Messages naming several lists are counted route by route below.
    -- One host delivering a recipient again by one route is another copy (nested lists
    -- both holding the member, Bedlam DL3): final_lines finds the few candidates; see
    -- extra_copies.
    SELECT i.uid_key, {{ hash64('d.recipient') }} AS rh,
        bit_or(CASE WHEN d.list IS NULL THEN 1 ELSE 16 END * (1
            + CASE WHEN d.status NOT IN ('deferred', 'discarded') THEN 2 ELSE 0 END
            + CASE WHEN d.status = 'bounced' THEN 4 ELSE 0 END
            + CASE WHEN d.dsn = '5.4.6' THEN 8 ELSE 0 END)) AS routes,
        count(*) FILTER (WHERE d.status NOT IN ('deferred', 'discarded')) AS final_lines,
        max(d.ts) AS last_ts
    FROM deliveries d
    JOIN _uid_inst i USING (message_key)
    WHERE NOT d.is_hop
    GROUP BY ALL
), extra_copies AS (
    -- the rare recipients delivered more often than they have delivered routes: the copies
    -- beyond one per route (recipient and list) on the host that delivered most of them.
    -- On one host, every final delivery is a copy in the mailbox (nested lists: each
    -- sub-list's copy is an instance of its own, Bedlam DL3); the same copy logged on
    -- every hop of a relay chain is one per host, so hosts are not added up. The same
    -- line twice (a syslog stream written twice into one file, one trace in two exports)
    -- is one copy: copies differ in instance, time, delay or status.
    SELECT uid_key, CAST(sum(copies - 1) AS BIGINT) AS extra
    FROM (SELECT uid_key, rh, list, max(copies) AS copies
          FROM (SELECT uid_key, rh, list, host, count(*) AS copies
                FROM (SELECT DISTINCT c.uid_key, c.rh, d.list, d.host, d.message_key, d.ts,
                          d.delay, d.status
                      FROM per_recipient c
                      JOIN _uid_inst i ON i.uid_key = c.uid_key
                      JOIN deliveries d ON d.message_key = i.message_key
                          AND {{ hash64('d.recipient') }} = c.rh
                      WHERE c.final_lines > CASE WHEN (c.routes & 2) <> 0 THEN 1 ELSE 0 END
                              + CASE WHEN (c.routes & 32) <> 0 THEN 1 ELSE 0 END
                          AND NOT d.is_hop AND d.status NOT IN ('deferred', 'discarded')) x
                GROUP BY uid_key, rh, list, host)
          GROUP BY uid_key, rh, list)
    GROUP BY uid_key
), per_msg_one_list AS (
    SELECT
        uid_key,
        count(*) AS recipients,
        count(*) FILTER (WHERE (routes & 2) <> 0) + count(*) FILTER (WHERE (routes & 32) <> 0)
            AS deliveries,
        count(*) FILTER (WHERE (routes & 4) <> 0) + count(*) FILTER (WHERE (routes & 64) <> 0)
            AS bounced,
        count(*) FILTER (WHERE (routes & 8) <> 0) + count(*) FILTER (WHERE (routes & 128) <> 0)
            AS loop_bounces,
        count(*) FILTER (WHERE (routes & 1) <> 0) AS direct_routes,
        max(last_ts) AS last_delivery
    FROM per_recipient
    GROUP BY uid_key
), routes AS (  -- the few messages naming several lists: route by route
    SELECT i.uid_key, {{ hash64('d.recipient') }} AS rh, d.list,
        bool_or(d.status NOT IN ('deferred', 'discarded')) AS delivered,
        bool_or(d.status = 'bounced') AS bounced,
        bool_or(d.dsn = '5.4.6') AS looped,
        max(d.ts) AS last_ts
    FROM deliveries d
    JOIN _uid_inst i USING (message_key)
    WHERE NOT d.is_hop AND i.uid_key IN (SELECT uid_key FROM listed WHERE lists > 1)
    GROUP BY ALL
), main_list AS (
    -- of a message naming several lists: the one most of its recipients came through
    -- (the first by name on a tie, so that a re-run names the same)
    SELECT uid_key, {{ arg_min('list', '-n', 'list') }} AS list
    FROM (SELECT uid_key, list, count(*) AS n FROM routes
          WHERE list IS NOT NULL GROUP BY ALL)
    GROUP BY uid_key
)
SELECT p.uid_key, p.recipients, p.deliveries + coalesce(e.extra, 0) AS deliveries,
    p.bounced, p.loop_bounces,
    -- what the sender wrote: the list once, each direct recipient once
    p.direct_routes + coalesce(l.lists, 0) AS submitted,
    l.list,  -- its one list, if any
    p.last_delivery
FROM per_msg_one_list p
LEFT JOIN listed l USING (uid_key)
LEFT JOIN extra_copies e USING (uid_key)
WHERE coalesce(l.lists, 0) <= 1
UNION ALL
SELECT r.uid_key, r.recipients, r.deliveries + coalesce(e.extra, 0), r.bounced,
    r.loop_bounces, r.submitted, main_list.list, r.last_delivery
FROM (SELECT
        uid_key,
        count(DISTINCT rh) AS recipients,
        count(*) FILTER (WHERE delivered) AS deliveries,
        count(*) FILTER (WHERE bounced) AS bounced,
        count(*) FILTER (WHERE looped) AS loop_bounces,
        -- what the sender wrote: each list once, each direct recipient once
        count(DISTINCT list) + count(*) FILTER (WHERE list IS NULL) AS submitted,
        max(last_ts) AS last_delivery
      FROM routes
      GROUP BY uid_key) r
LEFT JOIN main_list USING (uid_key)
LEFT JOIN extra_copies e USING (uid_key);

CREATE OR REPLACE TABLE _keyed AS
WITH solo AS (
    -- the one recipient of a message written to one address (auto-replies, a mail loop
    -- between two addresses): small, joined to the few messages with one recipient
    SELECT p.uid_key, min(d.recipient) AS to_address
    FROM _per_msg p
    JOIN _uid_inst i USING (uid_key)
    JOIN deliveries d ON d.message_key = i.message_key AND NOT d.is_hop
    WHERE p.recipients = 1
    GROUP BY p.uid_key
), passes AS (
    -- a message seen again and again on one host is going round in a loop; a list
    -- server's copies (Mailman re-sends a post in envelopes of a few hundred members,
    -- from <list>-bounces@) are not passes
    SELECT message_uid, max(n) AS max_passes
    FROM (SELECT message_uid, host, count(*) AS n
          FROM _uid_inst
          WHERE {{ list_of_copy('sender') }} IS NULL
          GROUP BY ALL)
    GROUP BY message_uid
), prelog AS (
    -- messages queued before the log starts (their arrival not logged; the sender too,
    -- unless the MTA names it again at a retry), told by what is known of their bounces:
    -- the recipient domain and the relay, so that a burst of them (a dead domain's queue
    -- flushed) is one group, not scattered over senders or dropped
    SELECT i.message_uid,
        min('mail queued before the log to @' || lower(split_part(d.recipient, '@', 2))
            || ' via ' || {{ regexp_replace_first("coalesce(d.relay, 'none')", RELAY_PORT, '') }})
            AS origin
    FROM _uid_inst i
    JOIN deliveries d ON d.message_key = i.message_key AND NOT d.is_hop
    WHERE d.status = 'bounced' AND i.message_uid IN (
        SELECT message_uid FROM _uid_inst GROUP BY message_uid HAVING NOT bool_or(intake_logged))
    GROUP BY i.message_uid
), merged AS (
    SELECT
        message_uid,
        {{ arg_min('message_id', 'first_seen', 'message_id') }} AS message_id,
        -- the first instance's sender, qualified if any is: Sendmail logs a local
        -- submission's sender as the user ("from=root"), the Postfix it hands the message
        -- to as root@host
        {{ arg_min('sender', "sender <> '' AND NOT contains(sender, '@')", 'first_seen',
                   'sender') }}
            AS sender,
        {{ arg_min('subject', 'first_seen', 'subject') }} FILTER (WHERE subject IS NOT NULL)
            AS subject,
        {{ arg_min('thread_subject', 'first_seen', 'subject') }} FILTER (WHERE subject IS NOT NULL)
            AS thread_subject,
        max(in_reply_to) AS in_reply_to,
        max(refs) AS refs,
        max(size) AS size,
        min(nrcpt) FILTER (WHERE nrcpt > 0) AS nrcpt,
        bool_or(is_reply) AS is_reply,
        bool_or(is_auto) AS is_auto,
        bool_or(is_local_ndr) AS is_local_ndr,
        -- submitted by an SMTP client elsewhere (not this host's loopback: a notice an
        -- MTA made and handed to its neighbour on 127.0.0.1 was made here)
        bool_or(client <> '' AND NOT {{ regexp_like('client', LOOPBACK_CLIENT) }})
            AS from_client,
        -- a list server's copy ("<list>-bounces@", VERP too) names its list
        min(CASE WHEN contains(sender, '-bounces') THEN {{ list_of_copy('sender') }} END)
            AS copy_list,
        min(first_seen) AS first_seen,
        max(last_seen) AS last_seen,
        count(*) AS hops,
        {{ string_agg_distinct_sorted('host', ',') }} AS hosts
    FROM _uid_inst
    GROUP BY message_uid
)
SELECT
    merged.*,
    coalesce(p.recipients, 0) AS recipients,
    coalesce(p.deliveries, 0) AS deliveries,
    coalesce(p.bounced, 0) AS bounced,
    -- what the sender wrote: by routes, or the envelope's recipient count before
    -- expansion when a host logs it (Sendmail nrcpts=, Exim, Exchange) and it is
    -- smaller: a list member delivered to a local mailbox shows no list in Sendmail
    CASE WHEN merged.nrcpt < p.submitted THEN merged.nrcpt
         ELSE coalesce(p.submitted, 0) END AS submitted,
    coalesce(p.loop_bounces, 0) AS loop_bounces,
    solo.to_address,
    passes.max_passes,
    -- a non-delivery notice a remote server sent back to a list's bounce address
    -- (null sender, to "<list>-bounces@", VERP too) is a bounce of that list's posts
    -- (the notices this host's own bounces made are counted as those bounces)
    coalesce(p.list, lp.list, merged.copy_list,
             CASE WHEN merged.sender = '' AND NOT merged.is_local_ndr
                       AND merged.from_client THEN {{ list_of_copy('solo.to_address') }} END)
        AS list,
    CASE WHEN merged.sender = '' AND NOT merged.is_local_ndr AND merged.from_client
              AND {{ list_of_copy('solo.to_address') }} IS NOT NULL THEN 1 ELSE 0 END
        AS returned,
    uo.origin AS prelog_origin,
    p.last_delivery,
    -- the thread root: first id of References, else In-Reply-To
    {{ root_ref('refs', 'in_reply_to') }} AS root_ref,
    CASE
        WHEN coalesce(thread_subject, '') <> ''
            THEN coalesce(p.list, lp.list, '') || ' | ' || thread_subject
        WHEN coalesce(p.list, lp.list) IS NOT NULL  -- no subject logged: by list
            THEN coalesce(p.list, lp.list) || ' |'
        ELSE message_uid
    END AS subject_key
FROM merged
LEFT JOIN _per_msg p ON p.uid_key = {{ hash64('merged.message_uid') }}
LEFT JOIN solo ON solo.uid_key = p.uid_key
LEFT JOIN passes USING (message_uid)
LEFT JOIN list_posts lp ON lp.message_id = merged.message_id
LEFT JOIN prelog uo USING (message_uid);

CREATE OR REPLACE TABLE logical_messages AS
SELECT
    {{ except_columns('k.*', 'subject_key', 'root_ref', 'is_local_ndr', 'from_client', 'copy_list') }},
    nullif(k.root_ref, '') AS root_ref,
    substr(md5(coalesce(r.subject_key, k.subject_key)), 1, 16) AS thread_id
FROM _keyed k
LEFT JOIN _keyed r ON r.message_id = nullif(k.root_ref, '') AND r.message_uid <> k.message_uid;

DROP TABLE IF EXISTS _keyed;

DROP TABLE IF EXISTS _per_msg;

DROP TABLE IF EXISTS _uid_inst;

DROP VIEW IF EXISTS _qev;

-- Stage 6: what the incremental build (build.py) follows from new lines to the stored
-- messages they touch, one row per message instance, as 64-bit hashes: it reads the last
-- days of it every night, and of every message for the queue ids it touches, where the
-- text columns themselves would cost several times more to read. (A hash shared by two
-- values only makes a build read again more than it had to.)
CREATE OR REPLACE TABLE _relations AS
SELECT
    m.message_key,
    CASE WHEN m.queue_id IS NOT NULL THEN {{ hash64("coalesce(m.host, '')", 'm.queue_id') }} END
        AS queue_key,
    CASE WHEN m.queue_id IS NOT NULL THEN {{ hash64('m.queue_id') }} END AS queue_hash,
    CASE WHEN m.message_id <> '' THEN {{ hash64('m.message_id') }} END AS id_hash,
    {{ hash64('m.message_uid') }} AS uid_hash,
    CASE WHEN l.root_ref <> '' THEN {{ hash64('l.root_ref') }} END AS root_hash,
    m.generation,
    -- (a queue id logged without a host is never told apart by its removals)
    CASE WHEN m.host IS NOT NULL THEN m.removed_at END AS removed_at,
    m.first_seen,
    greatest(m.last_seen, l.last_seen) AS last_seen
FROM messages m
LEFT JOIN logical_messages l ON l.message_uid = m.message_uid;
