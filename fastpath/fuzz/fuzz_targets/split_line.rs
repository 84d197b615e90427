//! The splitter on arbitrary bytes: it must never panic, and what it vouches for must hold
//! together (spans inside the line, in order; indices of a batch in range, each line
//! vouched at most once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailstorm_fastpath::splitter::{split_batch, split_line, Kind, FIELDS, RAW};

fuzz_target!(|data: &[u8]| {
    // the first two bytes pick the year (0..=65535 covers the calendar's edges)
    let (year, line) = match data {
        [a, b, rest @ ..] => (i64::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (2016, data),
    };
    if let Some(p) = split_line(line, year) {
        assert!(line.iter().all(|c| (0x20..0x7f).contains(c)), "vouched a non-printable line");
        for (name, span) in FIELDS.iter().zip(p.spans.iter()) {
            if let Some((s, e)) = *span {
                assert!(s <= e && (e as usize) <= line.len(), "{name} out of the line");
            }
        }
        assert_eq!(p.spans[RAW].is_some(), p.kind == Kind::Foreign);
        assert!(p.size.is_none_or(|v| v >= 0) && p.nrcpt.is_none_or(|v| v >= 0));
        assert!(p.delay.is_none_or(|d| d.is_finite() && d >= 0.0));
    }
    // the same bytes as a batch of lines (split on newlines), every other one without a year
    let lines: Vec<&[u8]> = line.split(|&c| c == b'\n').collect();
    let n = lines.len();
    let mut seen = vec![false; n];
    let vouched = split_batch(
        lines.iter().enumerate().map(|(i, l)| (Some(*l), (i % 2 == 0).then_some(year))),
        |i, _| {
            assert!(i < n, "index out of range");
            assert!(!seen[i], "line vouched twice");
            seen[i] = true;
        },
    );
    assert_eq!(vouched, seen.iter().filter(|&&s| s).count());
    assert!(seen.iter().skip(1).step_by(2).all(|&s| !s), "vouched a line without a year");
});
