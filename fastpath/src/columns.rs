//! A batch's vouched lines as Arrow columns (feature `arrow`, no Python: the fuzz target and
//! the unit tests build the very arrays the extension returns).
//!
//! The input is a `BinaryViewArray` (whose import checks the views' bounds, not UTF-8);
//! the string columns are views into its own buffers, made without a second validation
//! pass: every view is a span of a line this module checked to be ASCII, inside that line.

use std::sync::Arc;

use arrow_array::{Array, BinaryViewArray, Float64Array, Int64Array, StringViewArray, UInt32Array};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, Buffer, NullBuffer, ScalarBuffer};
use arrow_data::ByteView;

use crate::splitter::{split_line, Kind, Parsed, FIELDS};

const NFIELDS: usize = FIELDS.len();

/// A view of bytes `s..e` of `line`, which starts at `offset` of buffer `block`: inline
/// when 12 bytes or fewer, as the Arrow spec requires. `line`'s own view had a u32 length.
///
/// Built with integer arithmetic, not in a byte array: small stores read back as one u128
/// stall store forwarding (they were 40% of building the columns).
fn view(line: &[u8], s: usize, e: usize, block: u32, offset: u32) -> Option<u128> {
    let data = line.get(s..e)?;
    let len = u128::from(u32::try_from(data.len()).ok()?);
    if data.len() > 12 {
        let prefix = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        return Some(len | u128::from(prefix) << 32 | u128::from(block) << 64 | u128::from(offset) << 96);
    }
    // inline, zero-padded: one 16-byte load, masked, where the line has 16 bytes from `s`
    let bytes = match line.get(s..s.checked_add(16)?) {
        Some(w) => u128::from_le_bytes(w.try_into().ok()?) & ((1u128 << (8 * data.len())) - 1),
        None => {
            let mut raw = [0u8; 16];
            raw.get_mut(..data.len())?.copy_from_slice(data);
            u128::from_le_bytes(raw)
        }
    };
    Some(len | bytes << 32)
}

/// The columns of a batch's vouched lines, in line order.
pub struct Columns {
    /// One bit per line of the batch: vouched or left to the Polars parser.
    pub vouched: BooleanBuffer,
    /// Row in the batch of each vouched line.
    pub index: UInt32Array,
    /// Naive local time, microseconds since 1970.
    pub micros: Int64Array,
    pub kind: StringViewArray,
    /// The string fields, in `FIELDS` order.
    pub strings: Vec<StringViewArray>,
    pub size: Int64Array,
    pub nrcpt: Int64Array,
    pub delay: Float64Array,
}

// bits of a row's validity mask after the string fields' (which take bits 0..NFIELDS)
const SIZE_BIT: usize = NFIELDS;
const NRCPT_BIT: usize = NFIELDS + 1;
const DELAY_BIT: usize = NFIELDS + 2;
const _: () = assert!(DELAY_BIT < 32, "the masks are u32");

/// Column `bit` of the per-row masks as a null buffer (`None` when nothing is null);
/// packed 64 rows at a time rather than a bit pushed per row and column.
fn nulls_of(masks: &[u32], bit: usize) -> Option<NullBuffer> {
    let nulls = NullBuffer::new(BooleanBuffer::collect_bool(masks.len(), |r| {
        masks.get(r).is_some_and(|m| m >> bit & 1 != 0)
    }));
    (nulls.null_count() > 0).then_some(nulls)
}

/// Whether every span of `p` lies in a line of `len` bytes that starts at `offset` of its
/// buffer, offsets included in u32: then all of the line's views can be made.
fn spans_fit(p: &Parsed, len: u32, offset: u32) -> bool {
    offset.checked_add(len).is_some()
        && p.spans.iter().flatten().all(|&(s, e)| s <= e && e <= len)
}

/// Split every line of `raw` (years from `years`, row for row) and build the vouched
/// lines' columns. `Err` when the two differ in length or the batch is too long.
pub fn split_columns(raw: &BinaryViewArray, years: &Int64Array) -> Result<Columns, String> {
    let n = raw.len();
    if years.len() != n || u32::try_from(n).is_err() {
        return Err("raw and _year differ in length, or the batch is too long".into());
    }
    // the kind names live in one more buffer after the batch's own
    let data = raw.data_buffers();
    let kind_block = u32::try_from(data.len()).map_err(|_| "too many buffers".to_string())?;
    let mut names = Vec::new();
    let mut kind_views = [0u128; Kind::ALL.len()];
    for (slot, k) in kind_views.iter_mut().zip(Kind::ALL) {
        let at = u32::try_from(names.len()).map_err(|_| "kind names".to_string())?;
        let name = k.name().as_bytes();
        *slot = view(name, 0, name.len(), kind_block, at).ok_or("kind names")?;
        names.extend_from_slice(k.name().as_bytes());
    }
    let mut buffers: Vec<Buffer> = data.to_vec();
    buffers.push(Buffer::from_vec(names));
    let buffers: Arc<[Buffer]> = buffers.into();

    let mut vouched = BooleanBufferBuilder::new(n);
    let mut index: Vec<u32> = Vec::with_capacity(n);
    let mut micros: Vec<i64> = Vec::with_capacity(n);
    let mut kind: Vec<u128> = Vec::with_capacity(n);
    // zeroed up front (one memset each), so a null costs no store: most fields are null on
    // most lines (a delivery has no sender, message-id, client, subject...)
    let mut strings: [Vec<u128>; NFIELDS] = std::array::from_fn(|_| vec![0u128; n]);
    let mut m = 0usize; // lines vouched so far
    let (mut size, mut nrcpt, mut delay) = (vec![0i64; n], vec![0i64; n], vec![0f64; n]);
    let mut masks: Vec<u32> = Vec::with_capacity(n);
    for (i, &v) in raw.views().iter().enumerate() {
        let at = ByteView::from(v);
        // an inline line (12 bytes or fewer) has no buffer to point into: never a hot shape
        let line = if raw.is_null(i) || years.is_null(i) || at.length <= 12 {
            None
        } else {
            let start = at.offset as usize;
            data.get(at.buffer_index as usize)
                .and_then(|b| b.get(start..start.checked_add(at.length as usize)?))
        };
        // ASCII is checked here too, not only trusted from the splitter: it is what makes
        // every view of the line valid UTF-8 (see the SAFETY note in `string_column`)
        let parsed = line.filter(|l| l.is_ascii()).and_then(|line| {
            let p = split_line(line, *years.values().get(i)?)?;
            spans_fit(&p, at.length, at.offset).then_some((line, p))
        });
        let Some((line, p)) = parsed else {
            vouched.append(false);
            continue;
        };
        vouched.append(true);
        index.push(i as u32); // i < n <= u32::MAX, checked above
        micros.push(p.micros);
        kind.push(kind_views.get(p.kind as usize).copied().unwrap_or(0));
        let mut mask = 0u32;
        for (f, (col, sp)) in strings.iter_mut().zip(p.spans.iter()).enumerate() {
            // spans_fit: the slice exists and its offset fits (the fallbacks are unreachable)
            let v = sp.and_then(|(s, e)| {
                view(line, s as usize, e as usize, at.buffer_index, at.offset.saturating_add(s))
            });
            if let (Some(v), Some(slot)) = (v, col.get_mut(m)) {
                *slot = v;
                mask |= 1 << f;
            }
        }
        for (bit, v, col) in [(SIZE_BIT, p.size, &mut size), (NRCPT_BIT, p.nrcpt, &mut nrcpt)] {
            if let (Some(v), Some(slot)) = (v, col.get_mut(m)) {
                *slot = v;
                mask |= 1 << bit;
            }
        }
        if let (Some(v), Some(slot)) = (p.delay, delay.get_mut(m)) {
            *slot = v;
            mask |= 1 << DELAY_BIT;
        }
        masks.push(mask);
        m += 1;
    }
    for col in [&mut size, &mut nrcpt] {
        col.truncate(m);
    }
    delay.truncate(m);
    let strings = strings.into_iter().enumerate()
        .map(|(f, mut views)| {
            views.truncate(m);
            string_column(views.into(), nulls_of(&masks, f), &buffers)
        })
        .collect();
    Ok(Columns {
        vouched: vouched.finish(),
        index: UInt32Array::new(index.into(), None),
        micros: Int64Array::new(micros.into(), None),
        kind: string_column(kind.into(), None, &buffers),
        strings,
        size: Int64Array::new(size.into(), nulls_of(&masks, SIZE_BIT)),
        nrcpt: Int64Array::new(nrcpt.into(), nulls_of(&masks, NRCPT_BIT)),
        delay: Float64Array::new(delay.into(), nulls_of(&masks, DELAY_BIT)),
    })
}

/// A string-view column over `buffers`, not validated again.
///
/// Only for views made by `split_columns` from `buffers`: kind names (ASCII, in the last
/// buffer) or spans of lines checked to be ASCII, taken with `get` inside those lines.
#[allow(unsafe_code)]
fn string_column(views: ScalarBuffer<u128>, nulls: Option<NullBuffer>, buffers: &Arc<[Buffer]>) -> StringViewArray {
    // SAFETY: every view is in bounds (a sub-slice, taken with `get`, of a line that lies
    // in `buffers`, or a kind name in its last buffer; inline views are zero-padded by
    // `view`) and valid UTF-8 (its bytes are ASCII: the line passed `is_ascii` and
    // `split_line`'s printable test), so `try_new` would accept it; null views are 0. Debug
    // builds (tests, fuzzing) check this with the full validation.
    let col = unsafe { StringViewArray::new_unchecked(views, Arc::clone(buffers), nulls) };
    debug_assert!(col.to_data().validate_full().is_ok(), "string views failed validation");
    col
}

/// `split_columns` over a batch of byte lines (tests, the fuzz target).
pub fn split_lines(lines: &[&[u8]], year: Option<i64>) -> Result<Columns, String> {
    let raw = BinaryViewArray::from_iter_values(lines.iter().copied());
    let years = Int64Array::from(vec![year; lines.len()]);
    split_columns(&raw, &years)
}

impl Columns {
    /// Every column fully validated (the check `split_columns` skips in release builds).
    pub fn validate_full(&self) -> Result<(), String> {
        let err = |e: arrow_schema::ArrowError| e.to_string();
        self.kind.to_data().validate_full().map_err(err)?;
        for s in &self.strings {
            s.to_data().validate_full().map_err(err)?;
        }
        let m = self.index.len();
        let lens = [self.micros.len(), self.kind.len(), self.size.len(), self.nrcpt.len(), self.delay.len()];
        if lens.into_iter().chain(self.strings.iter().map(|s| s.len())).any(|l| l != m)
            || self.vouched.count_set_bits() != m
        {
            return Err("columns differ in length".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitter::{DETAIL, RECIPIENT, SENDER};

    const LINES: [&str; 6] = [
        "Oct  1 11:47:53 u86 postfix/smtp[10248]: DBED828417: to=<jamor@dplanet.com>, relay=mail.dplanet.com[67.23.8.134]:25, delay=1.6, delays=0.17/0.04/0.88/0.48, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as C1EBF731439)",
        "Oct  1 11:47:53 u86 postfix/qmgr[1712]: DBED828417: from=<>, size=2193, nrcpt=1 (queue active)",
        "Oct  1 11:47:53 u86 postfix/cleanup[1714]: DBED828417: message-id=<20161001114753.DBED828417@u86.example>",
        "short line",
        "Oct  1 11:47:54 u86 postfix/qmgr[1712]: DBED828417: removed",
        "Oct  1 11:47:54 u86 postfix/smtp[1]: caf\u{e9}: to=<x@y>, relay=none, delay=0, dsn=5.0.0, status=bounced (x)",
    ];

    #[test]
    fn columns_of_real_lines_validate() {
        let lines: Vec<&[u8]> = LINES.iter().map(|l| l.as_bytes()).collect();
        let c = split_lines(&lines, Some(2016)).unwrap();
        c.validate_full().unwrap();
        assert_eq!(c.index.values().to_vec(), vec![0, 1, 2, 4]);
        let recipient = &c.strings[RECIPIENT];
        assert_eq!(recipient.value(0), "jamor@dplanet.com");
        assert!(recipient.is_null(1));
        assert_eq!(c.strings[SENDER].value(1), ""); // from=<>: an empty sender, not a null
        assert!(c.strings[SENDER].is_valid(1));
        assert_eq!(c.strings[DETAIL].value(0), "250 2.0.0 Ok: queued as C1EBF731439");
        assert_eq!(c.kind.value(0), "delivery");
        assert_eq!(c.size.value(1), 2193);
        assert!(c.size.is_null(0));
        assert_eq!(c.delay.value(0), 1.6);
    }

    #[test]
    fn views_match_arrow() {
        // every length around the inline limit, with and without 16 bytes after the start
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for s in 0..line.len() {
            for e in s..=line.len() {
                let ours = view(line, s, e, 3, 100 + s as u32).unwrap();
                let theirs = arrow_data::ByteView::from(ours);
                assert_eq!(theirs.length as usize, e - s);
                let mut want = [0u8; 16];
                want[..4].copy_from_slice(&((e - s) as u32).to_le_bytes());
                if e - s <= 12 {
                    want[4..4 + e - s].copy_from_slice(&line[s..e]);
                } else {
                    want[4..8].copy_from_slice(&line[s..s + 4]);
                    want[8..12].copy_from_slice(&3u32.to_le_bytes());
                    want[12..16].copy_from_slice(&(100 + s as u32).to_le_bytes());
                }
                assert_eq!(ours, u128::from_le_bytes(want), "{s}..{e}");
            }
        }
        assert_eq!(view(line, 5, 99, 0, 0), None);
    }

    #[test]
    fn kind_discriminants_follow_all() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn no_year_no_line() {
        let lines: Vec<&[u8]> = LINES.iter().map(|l| l.as_bytes()).collect();
        let c = split_lines(&lines, None).unwrap();
        c.validate_full().unwrap();
        assert_eq!(c.index.len(), 0);
        assert!(split_columns(&BinaryViewArray::from_iter_values(lines), &Int64Array::from(vec![1])).is_err());
    }
}
