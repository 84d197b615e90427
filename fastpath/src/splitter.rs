//! The hottest Postfix line shapes, split in one pass over the bytes of a line.
//!
//! Pure safe Rust, no Python and no Arrow here, so it can be fuzzed on its own. A line is
//! *vouched* (`Some`) only when its fields are certain to equal what mailstorm's Polars
//! parser (detector/formats/postfix.py, syslog.py, finish.py) makes of it; anything else,
//! however plausible, is `None` and goes to that parser. Every input is hostile: no
//! indexing that input can push out of range, no arithmetic that can overflow.
#![forbid(unsafe_code)]

/// The string fields of an event, in the order of `Parsed::spans`.
pub const FIELDS: [&str; 17] = [
    "host", "program", "queue_id", "message_id", "sender", "recipient", "orig_to", "relay",
    "dsn", "status", "client", "subject", "in_reply_to", "refs", "next_queue_id", "detail",
    "raw",
];
pub const HOST: usize = 0;
pub const PROGRAM: usize = 1;
pub const QUEUE_ID: usize = 2;
pub const MESSAGE_ID: usize = 3;
pub const SENDER: usize = 4;
pub const RECIPIENT: usize = 5;
pub const ORIG_TO: usize = 6;
pub const RELAY: usize = 7;
pub const DSN: usize = 8;
pub const STATUS: usize = 9;
pub const CLIENT: usize = 10;
pub const SUBJECT: usize = 11;
pub const IN_REPLY_TO: usize = 12;
pub const REFS: usize = 13;
pub const NEXT_QUEUE_ID: usize = 14;
pub const DETAIL: usize = 15;
pub const RAW: usize = 16;

/// The kinds this splitter vouches for (the names of postfix.py's TABLE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Delivery,
    Foreign,
    SmtpdConnect,
    SmtpdDisconnect,
    QmgrFrom,
    CleanupMessageId,
    QueueRemoved,
    HeaderSubject,
    HeaderInReplyTo,
    HeaderReferences,
    SmtpdClient,
    Tls,
    Pickup,
    BounceNotification,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Delivery, Kind::Foreign, Kind::SmtpdConnect, Kind::SmtpdDisconnect,
        Kind::QmgrFrom, Kind::CleanupMessageId, Kind::QueueRemoved, Kind::HeaderSubject,
        Kind::HeaderInReplyTo, Kind::HeaderReferences, Kind::SmtpdClient, Kind::Tls,
        Kind::Pickup, Kind::BounceNotification,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Delivery => "delivery",
            Kind::Foreign => "foreign",
            Kind::SmtpdConnect => "smtpd_connect",
            Kind::SmtpdDisconnect => "smtpd_disconnect",
            Kind::QmgrFrom => "qmgr_from",
            Kind::CleanupMessageId => "cleanup_message_id",
            Kind::QueueRemoved => "queue_removed",
            Kind::HeaderSubject => "header_subject",
            Kind::HeaderInReplyTo => "header_in_reply_to",
            Kind::HeaderReferences => "header_references",
            Kind::SmtpdClient => "smtpd_client",
            Kind::Tls => "tls",
            Kind::Pickup => "pickup",
            Kind::BounceNotification => "bounce_notification",
        }
    }
}

/// A byte range `start..end` of the line.
pub type Span = (u32, u32);

/// What a vouched line holds: its naive timestamp (micros since 1970, local time of the
/// log), its kind, spans of its string fields (`FIELDS` order; `None` = null) and numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub micros: i64,
    pub kind: Kind,
    pub spans: [Option<Span>; 17],
    pub size: Option<i64>,
    pub nrcpt: Option<i64>,
    pub delay: Option<f64>,
}

// lines longer than this are left alone: spans are u32 and nothing hot is this long
const MAX_LINE: usize = 1 << 20;
// more candidate " from " positions than this in a header line: leave it to the regex
const MAX_HEADER_TRIES: usize = 64;

/// A cursor-free view of the line with checked helpers (never panics).
#[derive(Clone, Copy)]
struct Line<'a> {
    b: &'a [u8],
}

impl<'a> Line<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }
    fn slice(&self, s: usize, e: usize) -> Option<&'a [u8]> {
        self.b.get(s..e)
    }
    /// First `needle` at or after `from`, as an absolute index.
    fn find(&self, from: usize, end: usize, needle: &[u8]) -> Option<usize> {
        let hay = self.b.get(from..end)?;
        find(hay, needle).and_then(|i| from.checked_add(i))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let first = *needle.first()?;
    let mut i = 0usize;
    while i < hay.len() {
        // skip to the needle's first byte (SIMD), then compare the rest
        let pos = memchr::memchr(first, hay.get(i..)?)?;
        let s = i.checked_add(pos)?;
        if hay.get(s..)?.starts_with(needle) {
            return Some(s);
        }
        i = s.checked_add(1)?;
    }
    None
}

fn span(s: usize, e: usize) -> Option<Span> {
    if s > e {
        return None;
    }
    Some((u32::try_from(s).ok()?, u32::try_from(e).ok()?))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
    b"Dec",
];

fn digit(c: Option<u8>) -> Option<i64> {
    match c {
        Some(c @ b'0'..=b'9') => Some(i64::from(c - b'0')),
        _ => None,
    }
}

fn two_digits(l: Line, i: usize) -> Option<i64> {
    let a = digit(l.at(i))?;
    let b = digit(l.at(i.checked_add(1)?))?;
    Some(a * 10 + b)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil,
/// the formula syslog.py's _naive_datetime uses). Only called for years 2..=9998.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `Mmm dd hh:mm:ss ` / `Mmm  d hh:mm:ss ` / `Mmm d hh:mm:ss `: (naive micros, index of the
/// host). Fractions, year prefixes, ISO stamps, PRI and impossible times are not ours.
fn stamp(l: Line, year: i64) -> Option<(i64, usize)> {
    let mon = l.slice(0, 3)?;
    let month = MONTHS.iter().position(|m| m.as_slice() == mon)?;
    let month = i64::try_from(month).ok()? + 1;
    if l.at(3)? != b' ' {
        return None;
    }
    let (day, t) = match (l.at(4)?, l.at(5)?, l.at(6)?) {
        (b' ', d, b' ') => (digit(Some(d))?, 7),
        (a, b, b' ') if a.is_ascii_digit() && b.is_ascii_digit() => {
            (digit(Some(a))? * 10 + digit(Some(b))?, 7)
        }
        (a, b' ', _) if a.is_ascii_digit() => (digit(Some(a))?, 6),
        _ => return None,
    };
    let hh = two_digits(l, t)?;
    let mm = two_digits(l, t + 3)?;
    let ss = two_digits(l, t + 6)?;
    if l.at(t + 2)? != b':' || l.at(t + 5)? != b':' || l.at(t + 8)? != b' ' {
        return None; // a fraction, or no separator: the general path's business
    }
    // Feb 29 is left alone: a non-leap year loses its time and keeps its raw text there
    if !(2..=9998).contains(&year) || day < 1 || day > days_in_month(year, month)
        || (month == 2 && day == 29) || hh > 23 || mm > 59 || ss > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86_400)?.checked_add(hh * 3600 + mm * 60 + ss)?;
    Some((secs.checked_mul(1_000_000)?, t + 9))
}

/// Postfix's queue id test (postfix.py `_QID`), without NOQUEUE.
fn is_queue_id(id: &[u8]) -> bool {
    // long form: 10+ of [0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]
    let long = id.len() >= 10
        && id.iter().all(|&c| {
            c.is_ascii_digit()
                || (c.is_ascii_alphabetic() && !matches!(c.to_ascii_lowercase(), b'a' | b'e' | b'i' | b'o' | b'u'))
        });
    if long {
        return true;
    }
    // short form: 5+ hex capitals then any number of X
    let hex = id.iter().take_while(|&&c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)).count();
    hex >= 5 && id.get(hex..).is_some_and(|t| t.iter().all(|&c| c == b'X'))
}

/// The syslog tag `name[pid]:` / `name:` (syslog.py `_TAG`): the program name's end.
fn tag_program(tag: &[u8]) -> Option<usize> {
    let t = tag.strip_suffix(b":")?;
    let (name_end, ok) = match t.iter().position(|&c| c == b'[') {
        Some(p) => {
            let pid = t.get(p + 1..)?.strip_suffix(b"]")?;
            (p, !pid.is_empty() && pid.iter().all(u8::is_ascii_digit))
        }
        None => (t.len(), true),
    };
    let name = t.get(..name_end)?;
    (ok && !name.is_empty() && !name.contains(&b':')).then_some(name_end)
}

/// Run of bytes from `s` up to (not including) the first byte in `stop` or the end.
fn run_until(l: Line, s: usize, stop: &[u8]) -> usize {
    let tail = l.b.get(s..).unwrap_or(&[]);
    s + tail.iter().position(|c| stop.contains(c)).unwrap_or(tail.len())
}

/// A decimal count as Polars' lenient Int64 cast reads it; long or zero-padded ones are
/// left to it.
fn count(d: &[u8]) -> Option<i64> {
    if d.is_empty() || d.len() > 18 || (d.len() > 1 && d.first() == Some(&b'0')) {
        return None;
    }
    d.iter().try_fold(0i64, |acc, &c| {
        let v = digit(Some(c))?;
        acc.checked_mul(10)?.checked_add(v)
    })
}

/// A delay as Polars' lenient Float64 cast reads it: plain `123` or `1.25` only, where
/// every correctly rounded parser agrees.
fn seconds(d: &[u8]) -> Option<f64> {
    let (int, frac) = match d.iter().position(|&c| c == b'.') {
        Some(p) => (d.get(..p)?, Some(d.get(p + 1..)?)),
        None => (d, None),
    };
    let plain = |x: &[u8]| !x.is_empty() && x.len() <= 15 && x.iter().all(u8::is_ascii_digit);
    if !plain(int) || frac.is_some_and(|f| !plain(f)) {
        return None;
    }
    std::str::from_utf8(d).ok()?.parse::<f64>().ok()
}

struct Out {
    spans: [Option<Span>; 17],
    size: Option<i64>,
    nrcpt: Option<i64>,
    delay: Option<f64>,
}

impl Out {
    fn set(&mut self, field: usize, s: usize, e: usize) -> Option<()> {
        *self.spans.get_mut(field)? = Some(span(s, e)?);
        Some(())
    }
}

/// Bytes 0x20..=0x7e only. A fold without early exit per 64-byte chunk, which the compiler
/// turns into SIMD (the short-circuiting `all` stays a byte loop: a fifth of the split).
fn printable(line: &[u8]) -> bool {
    line.chunks(64).all(|ch| ch.iter().fold(true, |ok, &c| ok & (c.wrapping_sub(0x20) < 0x5f)))
}

/// Split one line (no newline) whose year was assigned ahead (`_year`).
pub fn split_line(line: &[u8], year: i64) -> Option<Parsed> {
    // printable ASCII only: no NUL, tabs, CR, non-ASCII (byte and char offsets agree, and
    // no Unicode class of a regex can differ from the byte test used here)
    if line.len() > MAX_LINE || !printable(line) {
        return None;
    }
    let l = Line { b: line };
    let n = line.len();
    let (micros, host) = stamp(l, year)?;
    let host_end = l.find(host, n, b" ")?;
    if host_end == host {
        return None; // an empty host: let the general path say what it is
    }
    let tag = host_end + 1;
    let tag_end = l.find(tag, n, b" ").unwrap_or(n);
    let prog_end = tag.checked_add(tag_program(l.slice(tag, tag_end)?)?)?;
    let msg = if tag_end < n { tag_end + 1 } else { n }; // no message: ""
    let mut out = Out { spans: [None; 17], size: None, nrcpt: None, delay: None };
    out.set(HOST, host, host_end)?;
    out.set(PROGRAM, tag, prog_end)?;

    // "QUEUEID: rest" (one split on ": ", the id tested on its own)
    let colon = l.find(msg, n, b": ");
    let id_end = colon.unwrap_or(n);
    let id = l.slice(msg, id_end)?;
    let noqueue = id == b"NOQUEUE";
    let queued = !noqueue && is_queue_id(id);
    if queued {
        out.set(QUEUE_ID, msg, id_end)?;
    }
    let postfix = l.slice(tag, prog_end)?.starts_with(b"postfix");
    if !postfix {
        out.set(RAW, 0, n)?; // another program's line: its raw text is the evidence
        let kind = Kind::Foreign;
        return Some(Parsed { micros, kind, spans: out.spans, size: None, nrcpt: None, delay: None });
    }
    if noqueue {
        return None;
    }
    let rest = if queued { colon? + 2 } else { msg };
    let r = l.slice(rest, n)?;
    let kind = if queued {
        queued_kind(l, rest, r, &mut out)?
    } else {
        unqueued_kind(l, rest, r, &mut out)?
    };
    Some(Parsed { micros, kind, spans: out.spans, size: out.size, nrcpt: out.nrcpt, delay: out.delay })
}

fn queued_kind(l: Line, rest: usize, r: &[u8], out: &mut Out) -> Option<Kind> {
    let n = l.b.len();
    if r.starts_with(b"to=<") {
        delivery(l, rest, out)?;
        return Some(Kind::Delivery);
    }
    if r.starts_with(b"client=") {
        let s = rest + 7;
        let e = run_until(l, s, b", ");
        if e == s {
            return None;
        }
        out.set(CLIENT, s, e)?;
        return Some(Kind::SmtpdClient);
    }
    if r.starts_with(b"message-id=") {
        let mut s = rest + 11;
        if l.at(s) == Some(b'<') {
            s += 1;
        }
        out.set(MESSAGE_ID, s, run_until(l, s, b"<> "))?;
        return Some(Kind::CleanupMessageId);
    }
    if r.starts_with(b"from=<") {
        // ", status=expired" anywhere makes it qmgr_expired: leave any status= alone
        if find(r, b", status=").is_some() {
            return None;
        }
        let s = rest + 6;
        let e = l.find(s, n, b">")?;
        out.set(SENDER, s, e)?;
        let size_at = e.checked_add(1)?;
        if !l.slice(size_at, n)?.starts_with(b", size=") {
            return None;
        }
        let ds = size_at + 7;
        let de = run_until_not_digit(l, ds);
        out.size = Some(count(l.slice(ds, de)?)?);
        if !l.slice(de, n)?.starts_with(b", nrcpt=") {
            return None;
        }
        let ns = de + 8;
        let ne = run_until_not_digit(l, ns);
        out.nrcpt = Some(count(l.slice(ns, ne)?)?);
        return Some(Kind::QmgrFrom);
    }
    if r == b"removed" {
        return Some(Kind::QueueRemoved);
    }
    if r.starts_with(b"uid=") {
        let ds = rest + 4;
        let de = run_until_not_digit(l, ds);
        if de == ds || !l.slice(de, n)?.starts_with(b" from=<") {
            return None;
        }
        let s = de + 7;
        let e = l.find(s, n, b">")?;
        out.set(SENDER, s, e)?;
        return Some(Kind::Pickup);
    }
    for (prefix, kind) in [
        (&b"info: header Subject: "[..], Kind::HeaderSubject),
        (&b"info: header In-Reply-To: "[..], Kind::HeaderInReplyTo),
        (&b"info: header References: "[..], Kind::HeaderReferences),
    ] {
        if r.starts_with(prefix) {
            header(l, rest + prefix.len(), kind, out)?;
            return Some(kind);
        }
    }
    if r.starts_with(b"sender ") || r.starts_with(b"postmaster ") {
        bounce(r)?;
        let s = rest + r.len() - r.iter().rev().position(|&c| c == b' ')?;
        out.set(NEXT_QUEUE_ID, s, n)?;
        return Some(Kind::BounceNotification);
    }
    None
}

fn run_until_not_digit(l: Line, s: usize) -> usize {
    let tail = l.b.get(s..).unwrap_or(&[]);
    s + tail.iter().position(|c| !c.is_ascii_digit()).unwrap_or(tail.len())
}

/// `(sender|postmaster) word [word ]notification: QUEUEID` and nothing else (the kind's
/// pattern and the field's `notification\w*: (id)$` then agree on it).
fn bounce(r: &[u8]) -> Option<()> {
    let once = find(r, b"notification")
        .is_some_and(|i| r.get(i + 1..).is_some_and(|t| find(t, b"notification").is_none()));
    if !once {
        return None;
    }
    let words: Vec<&[u8]> = r.split(|&c| c == b' ').collect();
    let word = |w: &[u8]| !w.is_empty() && w.iter().all(|&c| c.is_ascii_lowercase() || c == b'-');
    let (who, mid, last) = match words.as_slice() {
        [who, a, b"notification:", id] => (who, vec![*a], id),
        [who, a, b, b"notification:", id] => (who, vec![*a, *b], id),
        _ => return None,
    };
    let ok = (*who == b"sender" || *who == b"postmaster")
        && mid.iter().all(|w| word(w))
        && !last.is_empty()
        && last.iter().all(u8::is_ascii_alphanumeric);
    ok.then_some(())
}

fn unqueued_kind(l: Line, rest: usize, r: &[u8], out: &mut Out) -> Option<Kind> {
    for (prefix, kind) in [
        (&b"connect from "[..], Kind::SmtpdConnect),
        (&b"disconnect from "[..], Kind::SmtpdDisconnect),
    ] {
        if r.starts_with(prefix) {
            let s = rest + prefix.len();
            let e = run_until(l, s, b" ");
            if e == s {
                return None;
            }
            out.set(CLIENT, s, e)?;
            return Some(kind);
        }
    }
    // TLS set-up notices: kind tls unless the sasl row (case-insensitive) takes them first
    const TLS: [&[u8]; 4] = [
        b"Anonymous TLS connection established ", b"Trusted TLS connection established ",
        b"Untrusted TLS connection established ", b"Verified TLS connection established ",
    ];
    if TLS.iter().any(|p| r.starts_with(p)) {
        let lower: Vec<u8> = r.to_ascii_lowercase();
        if find(&lower, b"sasl").is_some() || find(&lower, b"authentication fail").is_some() {
            return None;
        }
        return Some(Kind::Tls);
    }
    None
}

/// `to=<r>, [orig_to=<o>,] relay=x, [conn_use=n,] delay=d, delays=a/b/c/d, dsn=x.y.z,
/// status=word (reply)`, read exactly as postfix.py's _delivery_fields reads it: the pairs
/// before ", status=" split on ", ", each at its position. Lines whose pairs are not in
/// that order are left to its by-key lookup.
fn delivery(l: Line, rest: usize, out: &mut Out) -> Option<()> {
    let n = l.b.len();
    let st = l.find(rest, n, b", status=")?;
    // at most 8 pieces (more never fit the positional reading): a fixed array, no heap
    let mut pieces = [(0usize, 0usize); 8];
    let mut count = 0usize;
    let mut s = rest;
    loop {
        let slot = pieces.get_mut(count)?;
        count += 1;
        match l.find(s, st, b", ") {
            Some(e) => {
                *slot = (s, e);
                s = e + 2;
            }
            None => {
                *slot = (s, st);
                break;
            }
        }
    }
    let piece = |i: usize| if i < count { pieces.get(i).copied() } else { None };
    let text = |p: (usize, usize)| l.slice(p.0, p.1);
    let starts = |i: usize, pre: &[u8]| piece(i).and_then(text).is_some_and(|t| t.starts_with(pre));
    let orig = starts(1, b"orig_to=<");
    let shift = usize::from(orig) + usize::from(starts(if orig { 3 } else { 2 }, b"conn_use="));
    let relay = piece(if orig { 2 } else { 1 })?;
    let (delay, delays, dsn) = (piece(2 + shift)?, piece(3 + shift)?, piece(4 + shift)?);
    if piece(5 + shift).is_some()
        || !text(relay)?.starts_with(b"relay=")
        || !text(delay)?.starts_with(b"delay=")
        || !text(delays)?.starts_with(b"delays=")
        || !text(dsn)?.starts_with(b"dsn=")
    {
        return None;
    }
    let to = piece(0)?;
    let strip_gt = |(s, e): (usize, usize)| if l.at(e.wrapping_sub(1)) == Some(b'>') && e > s { e - 1 } else { e };
    let rs = to.0 + 4; // after "to=<"
    out.set(RECIPIENT, rs, strip_gt((rs, to.1)).max(rs))?;
    if orig {
        let o = piece(1)?;
        let os = o.0 + 9;
        out.set(ORIG_TO, os, strip_gt((os, o.1)).max(os))?;
    } else {
        out.set(ORIG_TO, rs, strip_gt((rs, to.1)).max(rs))?; // addressed directly
    }
    out.set(RELAY, relay.0 + 6, relay.1)?;
    out.delay = Some(seconds(l.slice(delay.0 + 6, delay.1)?)?);
    out.set(DSN, dsn.0 + 4, dsn.1)?;
    // "status=word (reply)": split once on " (", one ")" off the reply's end
    let ts = st + 9;
    match l.find(ts, n, b" (") {
        Some(p) => {
            out.set(STATUS, ts, p)?;
            let ds = p + 2;
            let de = if n > ds && l.at(n - 1) == Some(b')') { n - 1 } else { n };
            out.set(DETAIL, ds, de)?;
            if let Some((a, b)) = next_queue_id(l.slice(ds, de)?) {
                out.set(NEXT_QUEUE_ID, ds + a, ds + b)?;
            }
        }
        None => out.set(STATUS, ts, n)?,
    }
    Some(())
}

/// `(?:queued as|forwarded as) ([0-9A-Za-z]{5,})`: the leftmost match's group. Both
/// words end in " as ", so only its occurrences are looked at (two matches cannot overlap:
/// the first to end starts first).
fn next_queue_id(d: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0usize;
    while let Some(j) = d.get(from..).and_then(|t| find(t, b" as ")).and_then(|j| j.checked_add(from)) {
        let before = d.get(..j)?;
        if before.ends_with(b"queued") || before.ends_with(b"forwarded") {
            let s = j + 4;
            let run = d.get(s..)?.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
            if run >= 5 {
                return Some((s, s + run));
            }
        }
        from = j + 1;
    }
    None
}

/// `info: header Name: value from client; from=<s> to=<r>...` as the greedy pattern
/// `^[a-z_]+: header (?P<hname>[A-Za-z-]+): ?(?P<hvalue>.*) from (?P<client>[^ ;]+);
/// from=<(?P<sender>[^>]*)> to=<(?P<recipient>[^>]*)>` reads it: the value runs to the
/// last " from " after which the rest fits.
fn header(l: Line, value: usize, kind: Kind, out: &mut Out) -> Option<()> {
    let n = l.b.len();
    let mut end = n;
    for _ in 0..MAX_HEADER_TRIES {
        let hay = l.slice(value, end)?;
        let p = value + rfind(hay, b" from ")?;
        if let Some((client, sender, recipient)) = header_tail(l, p) {
            let v = (value, p);
            out.set(CLIENT, client.0, client.1)?;
            out.set(SENDER, sender.0, sender.1)?;
            out.set(RECIPIENT, recipient.0, recipient.1)?;
            let text = l.slice(v.0, v.1)?;
            match kind {
                Kind::HeaderSubject => {
                    if find(text, b"=?").is_some() {
                        return None; // RFC 2047 words: decoded in Python
                    }
                    out.set(SUBJECT, v.0, v.1)?;
                }
                Kind::HeaderReferences => out.set(REFS, v.0, v.1)?,
                _ => {
                    // strip spaces, then one "<" and one ">"
                    let mut s = v.0 + text.iter().take_while(|&&c| c == b' ').count();
                    let mut e = v.1 - text.iter().rev().take_while(|&&c| c == b' ').count();
                    if e < s {
                        e = s;
                    }
                    if l.at(s) == Some(b'<') && s < e {
                        s += 1;
                    }
                    if e > s && l.at(e - 1) == Some(b'>') {
                        e -= 1;
                    }
                    out.set(IN_REPLY_TO, s, e)?;
                }
            }
            return Some(());
        }
        // " from " overlapping the end is found again by rfind on the shorter haystack
        end = p + 5;
    }
    None
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut end = hay.len();
    loop {
        let s = memchr::memrchr(first, hay.get(..end)?)?;
        if hay.get(s..)?.starts_with(needle) {
            return Some(s);
        }
        end = s;
    }
}

type Spans3 = ((usize, usize), (usize, usize), (usize, usize));

/// ` from client; from=<s> to=<r>` at `p` (anything may follow).
fn header_tail(l: Line, p: usize) -> Option<Spans3> {
    let n = l.b.len();
    let cs = p + 6;
    let ce = run_until(l, cs, b" ;");
    if ce == cs || !l.slice(ce, n)?.starts_with(b"; from=<") {
        return None;
    }
    let ss = ce + 8;
    let se = l.find(ss, n, b">")?;
    if !l.slice(se, n)?.starts_with(b"> to=<") {
        return None;
    }
    let rs = se + 6;
    let re = l.find(rs, n, b">")?;
    Some(((cs, ce), (ss, se), (rs, re)))
}

/// Split a batch: `lines` yields each line and its year (`None` for a null line or year).
/// Calls `keep(index, parsed)` for every vouched line, in order; returns how many.
pub fn split_batch<'a, I, F>(lines: I, mut keep: F) -> usize
where
    I: IntoIterator<Item = (Option<&'a [u8]>, Option<i64>)>,
    F: FnMut(usize, &Parsed),
{
    let mut vouched = 0usize;
    for (i, (line, year)) in lines.into_iter().enumerate() {
        if let (Some(line), Some(year)) = (line, year) {
            if let Some(p) = split_line(line, year) {
                keep(i, &p);
                vouched += 1;
            }
        }
    }
    vouched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(line: &'a str, p: &Parsed, f: usize) -> Option<&'a str> {
        p.spans[f].map(|(s, e)| &line[s as usize..e as usize])
    }

    #[test]
    fn delivery_line() {
        let line = "Oct  1 11:47:53 u86 postfix/smtp[10248]: DBED828417: to=<jamor@dplanet.com>, relay=mail.dplanet.com[67.23.8.134]:25, delay=1.6, delays=0.17/0.04/0.88/0.48, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as C1EBF731439)";
        let p = split_line(line.as_bytes(), 2016).unwrap();
        assert_eq!(p.kind, Kind::Delivery);
        assert_eq!(field(line, &p, RECIPIENT), Some("jamor@dplanet.com"));
        assert_eq!(field(line, &p, NEXT_QUEUE_ID), Some("C1EBF731439"));
        assert_eq!(field(line, &p, DETAIL), Some("250 2.0.0 Ok: queued as C1EBF731439"));
        assert_eq!(p.delay, Some(1.6));
    }

    #[test]
    fn odd_lines_are_left() {
        for line in ["", "Feb 29 00:00:00 h postfix/smtp[1]: x", "Nov 14 00:00:00.5 h a: b",
                     "<13>Nov 14 00:00:00 h a: b", "Nov 14 00:00:00 h postfix/smtp[1]: NOQUEUE: x"] {
            assert!(split_line(line.as_bytes(), 2016).is_none(), "{line}");
        }
    }
}
