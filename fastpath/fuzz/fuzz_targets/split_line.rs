//! The splitter on arbitrary bytes: it must never panic, and what it vouches for must hold
//! together (spans inside the line, in order; indices of a batch in range, each line
//! vouched at most once). The same batch through `columns::split_columns` (the arrays the
//! extension returns, built without UTF-8 validation) must validate fully, vouch for the
//! same lines and hold exactly the splitter's fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use arrow_array::{Array, BinaryViewArray, Int64Array};
use mailstorm_fastpath::columns::split_columns;
use mailstorm_fastpath::splitter::{split_batch, split_line, Kind, Parsed, FIELDS, RAW};

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
    let mut kept: Vec<(usize, Parsed)> = Vec::new();
    let vouched = split_batch(
        lines.iter().enumerate().map(|(i, l)| (Some(*l), (i % 2 == 0).then_some(year))),
        |i, p| {
            assert!(i < n, "index out of range");
            assert!(!seen[i], "line vouched twice");
            seen[i] = true;
            kept.push((i, p.clone()));
        },
    );
    assert_eq!(vouched, seen.iter().filter(|&&s| s).count());
    assert!(seen.iter().skip(1).step_by(2).all(|&s| !s), "vouched a line without a year");

    let raw = BinaryViewArray::from_iter_values(lines.iter().copied());
    let years = Int64Array::from_iter((0..n).map(|i| (i % 2 == 0).then_some(year)));
    let cols = split_columns(&raw, &years).expect("raw and years agree in length");
    cols.validate_full().expect("the unchecked arrays are valid Arrow");
    // lines of 12 bytes or fewer are inline views, never vouched by the columns
    let kept: Vec<&(usize, Parsed)> = kept.iter().filter(|(i, _)| lines[*i].len() > 12).collect();
    assert_eq!(cols.index.values().iter().map(|&i| i as usize).collect::<Vec<_>>(),
               kept.iter().map(|(i, _)| *i).collect::<Vec<_>>(), "columns vouch for other lines");
    for (row, (i, p)) in kept.iter().enumerate() {
        assert!(cols.vouched.value(*i));
        assert_eq!(cols.micros.value(row), p.micros);
        assert_eq!(cols.kind.value(row), p.kind.name());
        for (f, span) in p.spans.iter().enumerate() {
            let col = &cols.strings[f];
            match *span {
                Some((s, e)) => assert_eq!(col.value(row).as_bytes(), &lines[*i][s as usize..e as usize], "{}", FIELDS[f]),
                None => assert!(col.is_null(row), "{}", FIELDS[f]),
            }
        }
        assert_eq!(cols.size.is_valid(row).then(|| cols.size.value(row)), p.size);
        assert_eq!(cols.nrcpt.is_valid(row).then(|| cols.nrcpt.value(row)), p.nrcpt);
        assert_eq!(cols.delay.is_valid(row).then(|| cols.delay.value(row)), p.delay);
    }
});
