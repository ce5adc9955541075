"""Atomic, checksummed files and content hashing shared by the dataset, graph and model stores.

A checksummed file is ``MAGIC | u32 header length | header JSON | payload``. The header holds the
payload's length and CRC-32 plus caller metadata, so a truncated or corrupted file is detected on read
(:class:`CorruptEntryError`) instead of being trusted. Writes go to a temporary file in the same
directory and are renamed into place, so a crash never leaves a partial entry under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

from tlsearch.errors import CorruptEntryError

MAGIC = b"TLSCHK01"
_LEN = struct.Struct("<I")


def stable_hash(obj: Any, n: int = 32) -> str:
    """Hex SHA-256 of a JSON-serialisable object with sorted keys (first ``n`` hex digits)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | list[bytes]) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; caches may be shared between users/nodes
        with os.fdopen(fd, "wb") as fh:
            for part in [data] if isinstance(data, bytes) else data:
                fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checksummed(path: Path, payload: bytes | memoryview, meta: dict[str, Any]) -> None:
    header = dict(meta, payload_bytes=len(payload), payload_crc32=zlib.crc32(payload))
    hbytes = json.dumps(header, sort_keys=True).encode()
    write_atomic(path, [MAGIC, _LEN.pack(len(hbytes)), hbytes, bytes(payload)])


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Return (header, payload offset) without reading the payload."""
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + _LEN.size)
        if len(head) < len(MAGIC) + _LEN.size or head[: len(MAGIC)] != MAGIC:
            raise CorruptEntryError(f"{path}: not a tlsearch checksummed file (bad magic or truncated)")
        (hlen,) = _LEN.unpack(head[len(MAGIC) :])
        raw = fh.read(hlen)
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise CorruptEntryError(f"{path}: header is not valid JSON ({exc})") from None
    return header, len(MAGIC) + _LEN.size + hlen


def read_checksummed(path: Path) -> tuple[dict[str, Any], memoryview]:
    """Read and verify a checksummed file; raise :class:`CorruptEntryError` if it is damaged."""
    data = Path(path).read_bytes()
    if data[: len(MAGIC)] != MAGIC or len(data) < len(MAGIC) + _LEN.size:
        raise CorruptEntryError(f"{path}: not a tlsearch checksummed file (bad magic or truncated)")
    (hlen,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LEN.size + hlen
    try:
        header = json.loads(data[len(MAGIC) + _LEN.size : start])
    except ValueError as exc:
        raise CorruptEntryError(f"{path}: header is not valid JSON ({exc})") from None
    payload = memoryview(data)[start:]
    if len(payload) != header.get("payload_bytes"):
        raise CorruptEntryError(
            f"{path}: payload has {len(payload)} bytes, header says {header.get('payload_bytes')} (truncated?)"
        )
    if zlib.crc32(payload) != header.get("payload_crc32"):
        raise CorruptEntryError(f"{path}: payload checksum mismatch (file corrupted)")
    return header, payload
