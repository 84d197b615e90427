"""Finding inputs, rotation order, opening compressed files, batched line reading."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.errors import InputError, UsageError
from detector.sources import discover, head_lines, iter_batches, last_line, open_binary

LINES = [f"Jun 10 06:{i // 60:02d}:{i % 60:02d} mx postfix/smtpd[{i}]: connect from "
         f"host{i}.example[192.0.2.{i % 250}]" for i in range(200)]
TEXT = ("\n".join(LINES) + "\n").encode()


def touch(path: Path, data: bytes = b"x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(files: list) -> list[str]:
    return [Path(f.path).name for f in files]


# --- discover -------------------------------------------------------------------------------


def test_discover_single_file(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log")
    files = discover([str(p)])
    assert [f.path for f in files] == [str(p)]
    assert files[0].group == str(tmp_path / "mail.log")


def test_discover_folder_is_recursive_and_skips_hidden(tmp_path: Path) -> None:
    touch(tmp_path / "a.log")
    touch(tmp_path / "sub" / "deeper" / "b.log")
    touch(tmp_path / ".hidden.log")
    touch(tmp_path / ".git" / "c.log")  # hidden folder: not entered
    touch(tmp_path / "sub" / ".d.log")
    touch(tmp_path / "notes.md")
    touch(tmp_path / "meta.json")
    found = {os.path.relpath(f.path, tmp_path) for f in discover([str(tmp_path)])}
    assert found == {"a.log", os.path.join("sub", "deeper", "b.log")}


def test_discover_glob(tmp_path: Path) -> None:
    touch(tmp_path / "x" / "mail.log")
    touch(tmp_path / "y" / "mail.log")
    touch(tmp_path / "y" / "other.txt")
    files = discover([str(tmp_path / "*" / "mail.log")])
    assert sorted(f.path for f in files) == [
        str(tmp_path / "x" / "mail.log"), str(tmp_path / "y" / "mail.log")]
    recursive = discover([str(tmp_path / "**" / "*.txt")])
    assert [f.path for f in recursive] == [str(tmp_path / "y" / "other.txt")]


def test_discover_same_file_twice_is_read_once(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log")
    files = discover([str(p), str(tmp_path), str(tmp_path / "*.log")])
    assert len(files) == 1


@pytest.mark.parametrize("item", ["nope.log", "nothing/*.gz"])
def test_discover_missing_path_is_a_usage_error(tmp_path: Path, item: str) -> None:
    missing = str(tmp_path / item)
    with pytest.raises(UsageError) as exc:
        discover([missing])
    assert str(exc.value) == f"no such file, folder or glob match: {missing}"


def test_rotation_numbers_oldest_first(tmp_path: Path) -> None:
    for name in ["mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz"]:
        touch(tmp_path / name)
    files = discover([str(tmp_path)])
    assert names(files) == ["mail.log.10.gz", "mail.log.2.gz", "mail.log.1", "mail.log"]
    assert {f.group for f in files} == {str(tmp_path / "mail.log")}


def test_rotation_order_does_not_depend_on_argument_order(tmp_path: Path) -> None:
    paths = [touch(tmp_path / n) for n in ["mail.log", "mail.log.1", "mail.log.2.gz"]]
    files = discover([str(p) for p in paths])  # newest named first
    assert names(files) == ["mail.log.2.gz", "mail.log.1", "mail.log"]


def test_rotation_dateext(tmp_path: Path) -> None:
    for name in ["maillog", "maillog-20161114", "maillog-20161113.gz"]:
        touch(tmp_path / name)
    files = discover([str(tmp_path)])
    assert names(files) == ["maillog-20161113.gz", "maillog-20161114", "maillog"]
    assert {f.group for f in files} == {str(tmp_path / "maillog")}


def test_two_rotation_groups_in_one_call(tmp_path: Path) -> None:
    for name in ["mail.log", "mail.log.1", "mail.log.2.gz", "maillog", "maillog-20161113.gz",
                 "maillog-20161114"]:
        touch(tmp_path / name)
    files = discover([str(tmp_path / "mail.log"), str(tmp_path / "maillog-20161114"),
                      str(tmp_path / "mail.log.2.gz"), str(tmp_path / "maillog"),
                      str(tmp_path / "maillog-20161113.gz"), str(tmp_path / "mail.log.1")])
    # groups stay together, in the order first named; each oldest first
    assert names(files) == ["mail.log.2.gz", "mail.log.1", "mail.log",
                            "maillog-20161113.gz", "maillog-20161114", "maillog"]
    groups = [f.group for f in files]
    assert groups == [str(tmp_path / "mail.log")] * 3 + [str(tmp_path / "maillog")] * 3


# --- open_binary ----------------------------------------------------------------------------

COMPRESSORS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_open_binary_decompresses_by_magic(tmp_path: Path, kind: str) -> None:
    p = touch(tmp_path / f"mail.log.1.{kind}", COMPRESSORS[kind](TEXT))
    with open_binary(str(p)) as f:
        assert f.read() == TEXT


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_open_binary_trusts_magic_not_suffix(tmp_path: Path, kind: str) -> None:
    lying = touch(tmp_path / "mail.log.1", COMPRESSORS[kind](TEXT))  # no suffix at all
    with open_binary(str(lying)) as f:
        assert f.read() == TEXT
    plain = touch(tmp_path / f"plain.{kind}", TEXT)  # compressed suffix, plain content
    with open_binary(str(plain)) as f:
        assert f.read() == TEXT


def test_open_binary_missing_file_is_input_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.log")
    with pytest.raises(InputError) as exc:
        open_binary(missing)
    assert exc.value.path == missing
    assert str(exc.value).startswith(f"{missing}: cannot open")


def test_zstd_without_zstandard_says_what_to_install(tmp_path: Path) -> None:
    try:
        import zstandard
    except ImportError:
        p = touch(tmp_path / "mail.log.1.zst", b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
        with pytest.raises(InputError, match="pip install zstandard"):
            open_binary(str(p))
    else:
        p = touch(tmp_path / "mail.log.1.zst", zstandard.ZstdCompressor().compress(TEXT))
        with open_binary(str(p)) as f:
            assert f.read() == TEXT


# --- iter_batches ---------------------------------------------------------------------------


def read_all(path: Path, **kwargs: int) -> tuple[pl.DataFrame, list[int], int]:
    frames, ends = [], []
    for frame, consumed in iter_batches(str(path), **kwargs):
        frames.append(frame)
        ends.append(consumed)
    return pl.concat(frames), ends, len(frames)


@pytest.mark.parametrize("kind", ["plain", "gz", "bz2", "xz"])
def test_tiny_batches_read_the_same_lines_as_one_batch(tmp_path: Path, kind: str) -> None:
    data = TEXT if kind == "plain" else COMPRESSORS[kind](TEXT)
    p = touch(tmp_path / "mail.log", data)
    whole, ends, n = read_all(p)
    assert n == 1
    assert whole["raw"].to_list() == LINES
    assert whole["line_no"].to_list() == list(range(1, len(LINES) + 1))
    assert ends == [len(TEXT)]
    for batch_bytes in (7, 100, 4096):  # 7: smaller than any line
        tiny, ends, n = read_all(p, batch_bytes=batch_bytes)
        assert n > 1
        assert tiny.equals(whole)
        assert ends == sorted(ends) and ends[-1] == len(TEXT)


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log", b"first\nsecond\nthird, still being written")
    for batch_bytes in (4, 1 << 20):
        frame, ends, _ = read_all(p, batch_bytes=batch_bytes)
        assert frame["raw"].to_list() == ["first", "second", "third, still being written"]
        assert frame["line_no"].to_list() == [1, 2, 3]
        assert ends[-1] == len(b"first\nsecond\n")  # a later run re-reads line 3


def test_crlf_endings(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log", b"one\r\ntwo\r\n\r\nfour\r\n")
    for batch_bytes in (3, 1 << 20):
        frame, _, _ = read_all(p, batch_bytes=batch_bytes)
        assert frame["raw"].to_list() == ["one", "two", None, "four"]
        assert frame["line_no"].to_list() == [1, 2, 3, 4]


def test_blank_and_odd_lines_keep_their_numbers(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log", b'a\n\n"quoted, with comma\n# not a comment\nx\ry\n')
    frame, _, _ = read_all(p)
    assert frame["raw"].to_list() == ["a", None, '"quoted, with comma', "# not a comment",
                                      "x\ry"]
    assert frame["line_no"].to_list() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["plain", "gz"])
def test_skip_bytes_resumes_at_the_right_line(tmp_path: Path, kind: str) -> None:
    data = TEXT if kind == "plain" else gzip.compress(TEXT)
    p = touch(tmp_path / "mail.log", data)
    prefix = len(("\n".join(LINES[:37]) + "\n").encode())  # what an earlier run consumed
    for batch_bytes in (50, 1 << 20):
        frame, ends, _ = read_all(p, batch_bytes=batch_bytes, skip_bytes=prefix)
        assert frame["raw"].to_list() == LINES[37:]
        assert frame["line_no"].to_list() == list(range(38, len(LINES) + 1))
        assert ends[-1] == len(TEXT)


def test_skip_bytes_of_whole_file_yields_nothing(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log", TEXT)
    assert list(iter_batches(str(p), skip_bytes=len(TEXT))) == []


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    data = gzip.compress(TEXT * 20)
    p = touch(tmp_path / "mail.log.2.gz", data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        list(iter_batches(str(p), batch_bytes=1024))
    assert exc.value.path == str(p)
    assert str(exc.value).startswith(f"{p}:")


def damaged_deflate(data: bytes) -> bytes:
    """A gzip member whose first deflate block has the invalid block type 3."""
    broken = bytearray(gzip.compress(data))
    broken[10] = 0x07  # right after the 10-byte header: BFINAL=1, BTYPE=0b11
    return bytes(broken)


@pytest.mark.parametrize(("reader", "why"), [
    (lambda p: list(iter_batches(p)), "corrupt gzip"),
    (head_lines, "invalid block type"), (last_line, "invalid block type"),
], ids=["iter_batches", "head_lines", "last_line"])
def test_damaged_deflate_stream_is_an_input_error(tmp_path: Path, reader, why: str) -> None:
    p = touch(tmp_path / "mail.log.1.gz", damaged_deflate(TEXT))
    with pytest.raises(InputError, match=why) as exc:
        reader(str(p))
    assert exc.value.path == str(p)


# --- head_lines / last_line ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "gz", "bz2"])
def test_last_line(tmp_path: Path, kind: str) -> None:
    data = TEXT + b"\n\n"  # trailing blank lines are not the last line
    if kind != "plain":
        data = COMPRESSORS[kind](data)
    p = touch(tmp_path / "mail.log", data)
    assert last_line(str(p)) == LINES[-1]


def test_last_line_reads_only_the_tail_of_a_big_plain_file(tmp_path: Path) -> None:
    big = TEXT * 400  # > 64 KiB
    p = touch(tmp_path / "mail.log", big + b"the end\n")
    assert last_line(str(p)) == "the end"


def test_last_line_of_empty_file_is_none(tmp_path: Path) -> None:
    assert last_line(str(touch(tmp_path / "mail.log", b""))) is None
    assert last_line(str(touch(tmp_path / "blank.log", b"\n  \n"))) is None


def test_head_lines(tmp_path: Path) -> None:
    p = touch(tmp_path / "mail.log.1.gz", gzip.compress(TEXT))
    assert head_lines(str(p), 3) == LINES[:3]


def test_head_and_tail_of_a_truncated_gzip_are_the_lines_before_the_damage(
        tmp_path: Path) -> None:
    data = gzip.compress(TEXT)
    p = touch(tmp_path / "mail.log.1.gz", data[: len(data) // 2])
    [(before, read_to)] = [(frame["raw"].to_list(), end) for frame, end in
                           _until_damage(iter_batches(str(p)))]
    assert 0 < len(before) < len(LINES) and before == LINES[:len(before)]
    assert read_to == len(("\n".join(before) + "\n").encode())
    assert head_lines(str(p), 3) == LINES[:3]
    assert last_line(str(p)) == before[-1]
    with pytest.raises(InputError) as exc:  # nothing before the damage: an error
        head_lines(str(touch(tmp_path / "cut.log.gz", data[:10])))
    assert exc.value.path == str(tmp_path / "cut.log.gz")


def _until_damage(batches):  # noqa: ANN001, ANN202
    """The batches before the damage; the damage itself must come, and name its line."""
    from detector.errors import DamagedInputError

    got = []
    with pytest.raises(DamagedInputError) as exc:
        for batch in batches:
            got.append(batch)
    lines = sum(frame.height for frame, _ in got)
    assert (exc.value.line, exc.value.message) == (lines + 1, "truncated gzip")
    return got


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(alphabet="ab é\r\x00,\"", max_size=12), min_size=1, max_size=12),
       ending=st.sampled_from(["\n", "\r\n"]), last=st.text(alphabet="aé\r", max_size=3),
       batch_bytes=st.integers(1, 40))
def test_any_batch_size_reads_the_same_lines(tmp_path_factory: pytest.TempPathFactory,
                                             lines: list[str], ending: str, last: str,
                                             batch_bytes: int) -> None:
    # chunks cut lines anywhere: inside a UTF-8 character, between '\r' and '\n'
    data = ("".join(line + ending for line in lines) + last).encode()
    p = touch(tmp_path_factory.mktemp("b") / "mail.log", data)
    whole, whole_ends, _ = read_all(p, batch_bytes=1 << 20)
    cut, ends, _ = read_all(p, batch_bytes=batch_bytes)
    assert cut["raw"].to_list() == whole["raw"].to_list()
    assert cut["line_no"].to_list() == list(range(1, whole.height + 1))
    assert ends[-1] == whole_ends[-1]


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.text(alphabet="ab é\r\x00,\"", max_size=10), max_size=10),
       last=st.text(alphabet="aé\r\x00", min_size=1, max_size=4))
def test_a_block_s_unfinished_last_line_is_left_out_and_no_other(lines: list[str],
                                                                 last: str) -> None:
    """A block read up to its last line ending gives one row per line ending, the rows
    of the same block without the unfinished line after it, whatever that line holds (an
    '\\r', a NUL, nothing but those)."""
    from detector.sources import _lines_frame

    head = "".join(line + "\n" for line in lines).encode()
    got = _lines_frame(head + last.encode(), 7, whole=len(head))
    assert got.height == head.count(b"\n")
    assert got.to_dicts() == _lines_frame(head, 7).to_dicts()
