//! mailstorm's fast path for the hottest Postfix line shapes.
//!
//! `splitter` is the whole parser, safe Rust on bytes (it forbids `unsafe`); `columns`
//! (feature `arrow`) builds the vouched lines' Arrow columns as string views into the
//! batch's own buffers (no string is copied), its one `unsafe` call skipping a second
//! UTF-8 pass over views it made from ASCII lines; `edge` (feature `python`) is the thin
//! pyo3 layer over both.
#![deny(unsafe_code)]

pub mod splitter;

#[cfg(feature = "arrow")]
pub mod columns;

#[cfg(feature = "python")]
mod edge;
