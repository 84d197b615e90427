#!/usr/bin/env bash
# A bounded libFuzzer campaign on the splitter: fastpath/fuzz.sh SECONDS
# Stable toolchain only: cargo-fuzz's nightly flags are let through by RUSTC_BOOTSTRAP=1
# and no sanitizer is used (-s none: the splitter has no unsafe code; the one unsafe call,
# columns.rs's unchecked string views, is checked by the target running Arrow's full
# validation on every array it builds; panics, overflow checks (debug assertions on) and
# the target's asserts are what it finds).
# New inputs go to a scratch copy of the kept seed corpus, which stays small.
set -euo pipefail
secs="${1:?usage: fuzz.sh SECONDS}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
work="fuzz/corpus/split_line/.gen"
mkdir -p "$work"
RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --debug-assertions split_line "$work" fuzz/corpus/split_line \
  -- -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>&1 | tail -n 25
