"""Object storage (``s3://``, ``gs://``, any URI pyarrow's filesystems open): the one place that knows it.

A remote location is addressed by its URI; credentials and the endpoint come from the environment, as for
every AWS tool (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, and
``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO or Ceph). Files are copied whole; a local
mirror of a remote directory lives in the cache (``$TLSEARCH_CACHE/remote/<scheme>/<bucket>/<path>``).
No Ray, no torch: the experiment, the PT store and the CLI use it alike.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from tlsearch.errors import StorageError, UserInputError
from tlsearch.paths import cache_root

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.I)
FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
                 "GOOGLE_APPLICATION_CREDENTIALS")


def is_remote(location: str | os.PathLike[str] | None) -> bool:
    m = _SCHEME.match(str(location or ""))
    return bool(m) and m.group(1).lower() != "file"


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def env() -> dict[str, str]:
    """The credentials and endpoint of the object store, for Ray's workers (they open the same URIs)."""
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


def filesystem(uri: str) -> tuple[Any, str]:
    """pyarrow's filesystem for ``uri`` and the path on it; a URI it cannot open is the user's to fix."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserInputError(f"{uri}: cannot open this storage location ({exc}); fix: use s3://BUCKET/PATH "
                             "with credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL "
                             "for an S3-compatible server), or a local directory") from None


@contextmanager
def _reaching(uri: str) -> Iterator[None]:
    """An object store that cannot be reached is the user's to fix: say which location and how."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = str(exc).split(" (Request ID")[0].split("; Details:")[0]
        raise StorageError(f"{uri}: {why}; fix: check that the bucket exists and that AWS_ACCESS_KEY_ID, "
                           "AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION (and AWS_ENDPOINT_URL for an S3-compatible "
                           "server) reach it from this machine") from None


def check(uri: str) -> None:
    """Raise StorageError unless the bucket of ``uri`` exists and can be listed."""
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    bucket = path.split("/", 1)[0]
    with _reaching(uri):
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise StorageError(f"{uri}: bucket {bucket!r} does not exist; fix: create it, or name one that exists")
        fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def mirror(uri: str) -> Path:
    """Where a remote directory is copied to on this machine."""
    scheme, rest = uri.split("://", 1)
    parts = [p for p in PurePosixPath(rest).parts if p not in ("", ".", "..")]
    return cache_root() / "remote" / scheme.lower() / Path(*parts)


def _excluded(rel: str, exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, pat) for pat in exclude)


def _files(fs: Any, path: str) -> dict[str, tuple[int, float]]:
    import pyarrow.fs as pafs

    out = {}
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True)):
        if info.type == pafs.FileType.File:
            rel = PurePosixPath(info.path).relative_to(PurePosixPath(path)).as_posix()
            out[rel] = (info.size, info.mtime.timestamp() if info.mtime else 0.0)
    return out


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    with _reaching(uri):
        return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str) -> bytes | None:
    """The object's bytes, or None when there is none."""
    fs, path = filesystem(uri)
    try:
        with _reaching(uri), fs.open_input_stream(path) as f:
            return f.readall()
    except FileNotFoundError:
        return None


def write_bytes(uri: str, data: bytes) -> None:
    """One PUT: an object store shows the whole object or the old one, never a part."""
    fs, path = filesystem(uri)
    with _reaching(uri), fs.open_output_stream(path) as f:
        f.write(data)


def delete(uri: str) -> None:
    fs, path = filesystem(uri)
    try:
        with _reaching(uri):
            fs.delete_file(path)
    except FileNotFoundError:
        pass


def download(uri: str, local: Path, exclude: tuple[str, ...] = ()) -> int:
    """Copy the files under ``uri`` (relative paths matching none of ``exclude``) into ``local`` that differ from
    the local copy (size or time); each lands atomically. Returns how many were copied."""
    fs, path = filesystem(uri)
    with _reaching(uri):
        return _download(fs, path, local, exclude)


def _download(fs: Any, path: str, local: Path, exclude: tuple[str, ...]) -> int:
    n = 0
    for rel, (size, mtime) in _files(fs, path).items():
        if _excluded(rel, exclude):
            continue
        dest = local / rel
        if dest.exists() and dest.stat().st_size == size and abs(dest.stat().st_mtime - mtime) < 1:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        with fs.open_input_stream(f"{path}/{rel}") as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 22):
                out.write(chunk)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
        n += 1
    return n


def upload(local: Path, uri: str, exclude: tuple[str, ...] = (), sent: dict[str, tuple[int, int]] | None = None) -> int:
    """Copy the files under ``local`` (none matching ``exclude``) to ``uri``. With ``sent`` (relative path ->
    (size, mtime_ns) of what an earlier call uploaded), files unchanged since are skipped. Returns how many."""
    fs, path = filesystem(uri)
    with _reaching(uri):
        return _upload(fs, path, local, exclude, sent)


def stamp(f: Path) -> tuple[int, int]:
    """What ``upload``'s ``sent`` records of a file: (size, mtime_ns); a different stamp is a changed file."""
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def _upload(fs: Any, path: str, local: Path, exclude: tuple[str, ...], sent: dict[str, tuple[int, int]] | None) -> int:
    n = 0
    for f in sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []:
        rel = f.relative_to(local).as_posix()
        if _excluded(rel, exclude) or f.name.startswith("."):
            continue
        now = stamp(f)
        if sent is not None and sent.get(rel) == now:
            continue
        with open(f, "rb") as src, fs.open_output_stream(f"{path}/{rel}") as out:
            while chunk := src.read(1 << 22):
                out.write(chunk)
        if sent is not None:
            sent[rel] = now
        n += 1
    return n
