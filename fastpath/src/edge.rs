//! The Python edge: Arrow arrays in through the Arrow C data interface (arrow-pyarrow,
//! which validates what it imports), the splitter over them with the GIL released, Arrow
//! arrays out. No `unsafe` here either (the crate forbids it).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringViewArray, UInt32Array};
use arrow_buffer::{Buffer, NullBuffer, ScalarBuffer};
use arrow_data::{ArrayData, ByteView};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::splitter::{split_batch, Kind, Parsed, FIELDS};

/// A view of `data` (bytes `offset..` of buffer `block`), inline when 12 bytes or fewer as
/// the Arrow spec requires.
fn view(data: &[u8], block: u32, offset: u32) -> u128 {
    let len = data.len() as u32; // lines are under 1 MiB (splitter::MAX_LINE)
    let mut raw = [0u8; 16];
    raw[..4].copy_from_slice(&len.to_le_bytes());
    if data.len() <= 12 {
        raw[4..4 + data.len()].copy_from_slice(data);
        return u128::from_le_bytes(raw);
    }
    let prefix = data.get(..4).unwrap_or(&[0; 4]);
    raw[4..8].copy_from_slice(prefix);
    raw[8..12].copy_from_slice(&block.to_le_bytes());
    raw[12..16].copy_from_slice(&offset.to_le_bytes());
    u128::from_le_bytes(raw)
}

/// One string column being built: views and validity.
struct Col {
    views: Vec<u128>,
    valid: Vec<bool>,
}

impl Col {
    fn new(cap: usize) -> Self {
        Col { views: Vec::with_capacity(cap), valid: Vec::with_capacity(cap) }
    }
    fn finish(self, buffers: &Arc<[Buffer]>) -> Result<ArrayRef, arrow_schema::ArrowError> {
        let nulls = if self.valid.iter().all(|&v| v) { None } else { Some(NullBuffer::from(self.valid)) };
        Ok(Arc::new(StringViewArray::try_new(ScalarBuffer::from(self.views), Arc::clone(buffers), nulls)?))
    }
}

struct Columns {
    index: Vec<u32>,
    micros: Vec<i64>,
    kind: Col,
    strings: Vec<Col>,
    size: Vec<Option<i64>>,
    nrcpt: Vec<Option<i64>>,
    delay: Vec<Option<f64>>,
}

fn split(raw: &StringViewArray, years: &Int64Array) -> Result<(Vec<bool>, Columns, Arc<[Buffer]>), String> {
    let n = raw.len();
    if years.len() != n || u32::try_from(n).is_err() {
        return Err("raw and _year differ in length, or the batch is too long".into());
    }
    // the kind names live in one more buffer after the batch's own
    let mut names = Vec::new();
    let mut kind_at = Vec::new();
    for k in Kind::ALL {
        kind_at.push((k, names.len() as u32));
        names.extend_from_slice(k.name().as_bytes());
    }
    let kind_block = raw.data_buffers().len() as u32;
    let mut buffers: Vec<Buffer> = raw.data_buffers().to_vec();
    buffers.push(Buffer::from_vec(names.clone()));
    let buffers: Arc<[Buffer]> = buffers.into();

    let cap = n;
    let mut cols = Columns {
        index: Vec::with_capacity(cap),
        micros: Vec::with_capacity(cap),
        kind: Col::new(cap),
        strings: (0..FIELDS.len()).map(|_| Col::new(cap)).collect(),
        size: Vec::with_capacity(cap),
        nrcpt: Vec::with_capacity(cap),
        delay: Vec::with_capacity(cap),
    };
    let mut vouched = vec![false; n];
    let views = raw.views();
    let lines = (0..n).map(|i| {
        let line = (!raw.is_null(i)).then(|| raw.value(i).as_bytes());
        let year = (!years.is_null(i)).then(|| years.value(i));
        (line, year)
    });
    split_batch(lines, |i, p: &Parsed| {
        let Some(&v) = views.get(i) else { return };
        let bv = ByteView::from(v);
        if bv.length <= 12 {
            return; // an inline line has no buffer to point into (never a vouched shape)
        }
        let line = raw.value(i).as_bytes();
        if let Some(flag) = vouched.get_mut(i) {
            *flag = true;
        }
        cols.index.push(i as u32);
        cols.micros.push(p.micros);
        let (name_at, name) = kind_at.iter().find(|(k, _)| *k == p.kind).map(|(k, at)| (*at, k.name())).unwrap_or((0, ""));
        cols.kind.views.push(view(name.as_bytes(), kind_block, name_at));
        cols.kind.valid.push(true);
        for (col, sp) in cols.strings.iter_mut().zip(p.spans.iter()) {
            match sp.and_then(|(s, e)| Some((s, line.get(s as usize..e as usize)?))) {
                Some((s, text)) => {
                    col.views.push(view(text, bv.buffer_index, bv.offset.saturating_add(s)));
                    col.valid.push(true);
                }
                None => {
                    col.views.push(0);
                    col.valid.push(false);
                }
            }
        }
        cols.size.push(p.size);
        cols.nrcpt.push(p.nrcpt);
        cols.delay.push(p.delay);
    });
    Ok((vouched, cols, buffers))
}

/// split(raw: pyarrow.StringViewArray, year: pyarrow.Int64Array) -> dict of pyarrow arrays:
/// `vouched` (bool, one per line), `index` (uint32 row of each vouched line), `micros`
/// (naive local time), `kind`, the string fields, `size`, `nrcpt`, `delay`.
#[pyfunction]
fn split_postfix<'py>(py: Python<'py>, raw: &Bound<'py, PyAny>, year: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let raw = StringViewArray::from(ArrayData::from_pyarrow_bound(raw)?);
    let years = Int64Array::from(ArrayData::from_pyarrow_bound(year)?);
    let (vouched, cols, buffers) = py.detach(|| split(&raw, &years)).map_err(PyValueError::new_err)?;
    let err = |e: arrow_schema::ArrowError| PyValueError::new_err(e.to_string());
    let out = PyDict::new(py);
    let put = |name: &str, a: ArrayRef| -> PyResult<()> { out.set_item(name, a.to_data().to_pyarrow(py)?) };
    put("vouched", Arc::new(BooleanArray::from(vouched)))?;
    put("index", Arc::new(UInt32Array::from(cols.index)))?;
    put("micros", Arc::new(Int64Array::from(cols.micros)))?;
    put("kind", cols.kind.finish(&buffers).map_err(err)?)?;
    for (name, col) in FIELDS.iter().zip(cols.strings) {
        put(name, col.finish(&buffers).map_err(err)?)?;
    }
    put("size", Arc::new(Int64Array::from(cols.size)))?;
    put("nrcpt", Arc::new(Int64Array::from(cols.nrcpt)))?;
    put("delay", Arc::new(Float64Array::from(cols.delay)))?;
    Ok(out)
}

/// count_postfix(raw, year) -> lines vouched: the splitter alone, no columns built (for
/// bench/fastpath.py, which times the split and the Arrow building apart).
#[pyfunction]
fn count_postfix(py: Python<'_>, raw: &Bound<'_, PyAny>, year: &Bound<'_, PyAny>) -> PyResult<usize> {
    let raw = StringViewArray::from(ArrayData::from_pyarrow_bound(raw)?);
    let years = Int64Array::from(ArrayData::from_pyarrow_bound(year)?);
    if years.len() != raw.len() {
        return Err(PyValueError::new_err("raw and _year differ in length"));
    }
    Ok(py.detach(|| {
        let lines = (0..raw.len()).map(|i| {
            ((!raw.is_null(i)).then(|| raw.value(i).as_bytes()), (!years.is_null(i)).then(|| years.value(i)))
        });
        split_batch(lines, |_, _| {})
    }))
}

#[pymodule]
fn mailstorm_fastpath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(split_postfix, m)?)?;
    m.add_function(wrap_pyfunction!(count_postfix, m)?)?;
    m.add("KINDS", Kind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>())?;
    Ok(())
}
