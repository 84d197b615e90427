//! The Python edge: Arrow arrays in and out through the Arrow C data interface
//! (arrow-pyarrow), the splitter (`columns`) in between with the GIL released.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BinaryViewArray, BooleanArray, Int64Array, StringViewArray};
use arrow_data::ArrayData;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::DataType;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::columns::split_columns;
use crate::splitter::{split_batch, Kind, FIELDS};

/// The batch's `raw` lines as binary views. A `BinaryView` import (what
/// `Series.cast(pl.Binary)` gives, free in Polars) is validated for bounds only; a
/// `StringView` one is also validated as UTF-8 over the whole batch (slower, still taken).
fn import_raw(raw: &Bound<'_, PyAny>) -> PyResult<BinaryViewArray> {
    let data = ArrayData::from_pyarrow_bound(raw)?;
    match data.data_type() {
        DataType::BinaryView => Ok(BinaryViewArray::from(data)),
        DataType::Utf8View => Ok(StringViewArray::from(data).to_binary_view()),
        other => Err(PyValueError::new_err(format!("raw must be string_view or binary_view, not {other}"))),
    }
}

fn import_years(year: &Bound<'_, PyAny>) -> PyResult<Int64Array> {
    let data = ArrayData::from_pyarrow_bound(year)?;
    if data.data_type() != &DataType::Int64 {
        return Err(PyValueError::new_err("year must be int64"));
    }
    Ok(Int64Array::from(data))
}

/// split(raw: pyarrow string_view or binary_view array, year: pyarrow int64 array) -> dict
/// of pyarrow arrays: `vouched` (bool, one per line), `index` (uint32 row of each vouched
/// line), `micros` (naive local time), `kind`, the string fields, `size`, `nrcpt`, `delay`.
#[pyfunction]
fn split_postfix<'py>(py: Python<'py>, raw: &Bound<'py, PyAny>, year: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let raw = import_raw(raw)?;
    let years = import_years(year)?;
    let cols = py.detach(|| split_columns(&raw, &years)).map_err(PyValueError::new_err)?;
    let out = PyDict::new(py);
    let put = |name: &str, a: ArrayRef| -> PyResult<()> { out.set_item(name, a.to_data().to_pyarrow(py)?) };
    put("vouched", Arc::new(BooleanArray::new(cols.vouched, None)))?;
    put("index", Arc::new(cols.index))?;
    put("micros", Arc::new(cols.micros))?;
    put("kind", Arc::new(cols.kind))?;
    for (name, col) in FIELDS.iter().zip(cols.strings) {
        put(name, Arc::new(col))?;
    }
    put("size", Arc::new(cols.size))?;
    put("nrcpt", Arc::new(cols.nrcpt))?;
    put("delay", Arc::new(cols.delay))?;
    Ok(out)
}

/// count_postfix(raw, year) -> lines vouched: the splitter alone, no columns built (for
/// bench/fastpath.py, which times the split and the Arrow building apart).
#[pyfunction]
fn count_postfix(py: Python<'_>, raw: &Bound<'_, PyAny>, year: &Bound<'_, PyAny>) -> PyResult<usize> {
    let raw = import_raw(raw)?;
    let years = import_years(year)?;
    if years.len() != raw.len() {
        return Err(PyValueError::new_err("raw and _year differ in length"));
    }
    Ok(py.detach(|| {
        let lines = (0..raw.len()).map(|i| {
            ((!raw.is_null(i)).then(|| raw.value(i)), (!years.is_null(i)).then(|| years.value(i)))
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
