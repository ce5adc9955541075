"""Checksummed files, atomic writes and stable hashing (tlsearch._io)."""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import pytest

from tlsearch._io import (
    MAGIC,
    read_checksummed,
    read_header,
    stable_hash,
    write_atomic,
    write_checksummed,
)
from tlsearch.errors import CorruptEntryError

PAYLOAD = bytes(range(256)) * 8 + b"tail"
META = {"kind": "graph", "version": 3, "ids": ["a", "b"]}


def _leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.fixture
def entry(tmp_path: Path) -> Path:
    path = tmp_path / "entry.bin"
    write_checksummed(path, PAYLOAD, META)
    return path


def _header_len(path: Path) -> int:
    data = path.read_bytes()
    return int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")


# --------------------------------------------------------------------------- round trip


def test_checksummed_round_trip(entry: Path) -> None:
    header, payload = read_checksummed(entry)
    assert bytes(payload) == PAYLOAD
    for key, value in META.items():
        assert header[key] == value
    assert header["payload_bytes"] == len(PAYLOAD)
    assert header["payload_crc32"] == zlib.crc32(PAYLOAD)


def test_round_trip_accepts_memoryview_and_empty_payload(tmp_path: Path) -> None:
    path = tmp_path / "mv.bin"
    write_checksummed(path, memoryview(PAYLOAD), {})
    assert bytes(read_checksummed(path)[1]) == PAYLOAD
    empty = tmp_path / "empty.bin"
    write_checksummed(empty, b"", {"x": 1})
    header, payload = read_checksummed(empty)
    assert bytes(payload) == b"" and header["x"] == 1


def test_read_header_matches_and_gives_payload_offset(entry: Path) -> None:
    header, offset = read_header(entry)
    full_header, payload = read_checksummed(entry)
    assert header == full_header
    assert entry.read_bytes()[offset:] == PAYLOAD
    assert offset == len(MAGIC) + 4 + _header_len(entry)


def test_overwrite_replaces_content(entry: Path) -> None:
    write_checksummed(entry, b"new", {"kind": "other"})
    header, payload = read_checksummed(entry)
    assert bytes(payload) == b"new" and header["kind"] == "other"
    assert _leftovers(entry.parent, {entry.name}) == []


# --------------------------------------------------------------------------- corruption


def _cut_positions(path: Path) -> dict[str, int]:
    size = path.stat().st_size
    hstart = len(MAGIC) + 4
    hend = hstart + _header_len(path)
    return {
        "empty": 0,
        "inside magic": 3,
        "after magic": len(MAGIC),
        "inside length field": len(MAGIC) + 2,
        "at header start": hstart,
        "inside header": hstart + 1,
        "middle of header": (hstart + hend) // 2,
        "one byte before header end": hend - 1,
        "at payload start": hend,
        "inside payload": hend + 1,
        "middle of payload": (hend + size) // 2,
        "one byte short": size - 1,
    }


@pytest.mark.parametrize(
    "where",
    [
        "empty",
        "inside magic",
        "after magic",
        "inside length field",
        "at header start",
        "inside header",
        "middle of header",
        "one byte before header end",
        "at payload start",
        "inside payload",
        "middle of payload",
        "one byte short",
    ],
)
def test_truncation_is_detected(entry: Path, where: str) -> None:
    cut = _cut_positions(entry)[where]
    entry.write_bytes(entry.read_bytes()[:cut])
    with pytest.raises(CorruptEntryError):
        read_checksummed(entry)


@pytest.mark.parametrize("where", ["empty", "inside magic", "inside length field", "inside header", "middle of header"])
def test_truncated_header_is_detected_by_read_header(entry: Path, where: str) -> None:
    cut = _cut_positions(entry)[where]
    entry.write_bytes(entry.read_bytes()[:cut])
    with pytest.raises(CorruptEntryError):
        read_header(entry)


def test_extra_trailing_bytes_are_detected(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes() + b"\x00")
    with pytest.raises(CorruptEntryError, match="payload has"):
        read_checksummed(entry)


@pytest.mark.parametrize("offset_from_payload", [0, 1, 1000, -1])
def test_flipped_payload_byte_is_detected(entry: Path, offset_from_payload: int) -> None:
    _, start = read_header(entry)
    data = bytearray(entry.read_bytes())
    pos = start + offset_from_payload if offset_from_payload >= 0 else len(data) + offset_from_payload
    data[pos] ^= 0x01
    entry.write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError, match="checksum"):
        read_checksummed(entry)


def test_corrupted_header_json_is_detected(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[len(MAGIC) + 4] = ord("#")  # the header's opening brace
    entry.write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError, match="header"):
        read_checksummed(entry)
    with pytest.raises(CorruptEntryError, match="header"):
        read_header(entry)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello world, this is just some text file\n",
        json.dumps({"payload_bytes": 0}).encode(),
        b"PK\x03\x04" + b"\x00" * 64,  # a zip file
        MAGIC[:-1] + b"2" + b"\x00" * 32,  # another format version
    ],
)
def test_non_tlsearch_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(CorruptEntryError, match="not a tlsearch"):
        read_checksummed(path)
    with pytest.raises(CorruptEntryError, match="not a tlsearch"):
        read_header(path)


def test_corrupt_entry_message_names_the_file(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-5])
    with pytest.raises(CorruptEntryError) as info:
        read_checksummed(entry)
    assert str(entry) in str(info.value)


# --------------------------------------------------------------------------- write_atomic


def test_write_atomic_bytes_and_parts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "file.bin"  # parents are created
    write_atomic(path, b"abc")
    assert path.read_bytes() == b"abc"
    write_atomic(path, [b"x", b"", b"yz"])
    assert path.read_bytes() == b"xyz"
    assert _leftovers(path.parent, {"file.bin"}) == []


def test_write_atomic_failure_midway_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"original content")
    with pytest.raises(TypeError):
        write_atomic(path, [b"new first part", "not bytes", b"never written"])  # type: ignore[list-item]
    assert path.read_bytes() == b"original content"
    assert _leftovers(tmp_path, {"file.bin"}) == []


def test_write_atomic_failure_without_existing_file_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    with pytest.raises(TypeError):
        write_atomic(path, [b"a", 12345])  # type: ignore[list-item]
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_failure_from_generator(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"keep me")

    def parts():
        yield b"partial"
        raise KeyboardInterrupt  # a BaseException, as on Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, parts())  # type: ignore[arg-type]
    assert path.read_bytes() == b"keep me"
    assert _leftovers(tmp_path, {"file.bin"}) == []


def test_checksummed_write_failure_keeps_previous_entry(entry: Path) -> None:
    with pytest.raises(TypeError):
        write_checksummed(entry, b"new", {"bad": object.__new__(type("Unserialisable", (), {}))})
    header, payload = read_checksummed(entry)
    assert bytes(payload) == PAYLOAD and header["kind"] == "graph"
    assert _leftovers(entry.parent, {entry.name}) == []


# --------------------------------------------------------------------------- stable_hash


def test_stable_hash_ignores_key_order() -> None:
    a = {"b": 1, "a": [1, 2, {"y": 2, "x": 1}], "c": {"q": None, "p": "s"}}
    b = {"c": {"p": "s", "q": None}, "a": [1, 2, {"x": 1, "y": 2}], "b": 1}
    assert stable_hash(a) == stable_hash(b)


@pytest.mark.parametrize(
    "other",
    [
        {"a": 1, "b": 3},
        {"a": 1, "b": "2"},
        {"a": 1, "b": 2, "c": 0},
        {"a": 1},
        {"a": 1, "B": 2},
        {"a": [1], "b": 2},
    ],
)
def test_stable_hash_is_sensitive_to_values_and_keys(other: dict) -> None:
    assert stable_hash({"a": 1, "b": 2}) != stable_hash(other)


def test_stable_hash_is_sensitive_to_list_order() -> None:
    assert stable_hash([1, 2, 3]) != stable_hash([3, 2, 1])


def test_stable_hash_length_and_determinism() -> None:
    h = stable_hash({"x": 1})
    assert len(h) == 32 and all(c in "0123456789abcdef" for c in h)
    assert stable_hash({"x": 1}, n=8) == h[:8]
    assert len(stable_hash({"x": 1}, n=64)) == 64
    # fixed value: the hash must not change between runs or processes (it names cache entries)
    assert h == hashlib.sha256(b'{"x":1}').hexdigest()[:32]
    assert stable_hash({"p": Path("/a/b")}) == stable_hash({"p": "/a/b"})
