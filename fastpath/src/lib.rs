//! mailstorm's fast path for the hottest Postfix line shapes.
//!
//! `splitter` is the whole parser, safe Rust on bytes; `edge` (feature `python`) is the
//! thin pyo3/Arrow layer: it reads a batch's `raw` string-view array in place and returns
//! the vouched lines' fields as string views into the same buffers (no string is copied).
#![forbid(unsafe_code)]

pub mod splitter;

#[cfg(feature = "python")]
mod edge;
