"""A shared tier on an object store for entries that are expensive to make and the same wherever they are made:
the PT store's models (``cluster.pt_store: s3://...``) and the graph cache's packs (``cluster.graph_store``),
for nodes that share no filesystem. Each node keeps its entries in a local mirror and asks the object store
before it makes one.

An object store has no lock. Nodes coordinate through a claim object ``<key>.claim`` (holder, start, heartbeat):

* an entry ``<key><suffix>`` on the store is downloaded, verified like a local one by the caller, and used;
* a live claim (heartbeat younger than ``lease_s``, ``TLSEARCH_STORE_LEASE_S``, default 60 s) means another
  node makes it: wait for the entry;
* a claim whose heartbeat has stopped (its node died, or was cut off) is stale: take over;
* with no claim, write one, wait ``settle_s`` and read it back: when two nodes claimed at once, the last write
  wins and the other waits (at worst both make it: the same key is the same entry, so either upload is right);
* the holder beats every ``lease_s / 4`` while it works, uploads the entry whole (one PUT: readers see all
  of it or nothing) and then deletes its claim.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tlsearch import remote
from tlsearch._io import write_atomic
from tlsearch.errors import StorageError

LEASE_ENV = "TLSEARCH_STORE_LEASE_S"


class RemoteTier:
    def __init__(self, uri: str, suffix: str, lease_s: float | None = None, settle_s: float = 1.0,
                 poll_s: float = 1.0) -> None:
        lease_s = float(os.environ.get(LEASE_ENV, "60")) if lease_s is None else lease_s
        self.uri, self.suffix = uri.rstrip("/"), suffix
        self.lease_s, self.settle_s, self.poll_s = lease_s, settle_s, poll_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _entry(self, key: str) -> str:
        return remote.join(self.uri, f"{key}{self.suffix}")

    def _claim(self, key: str) -> str:
        return remote.join(self.uri, f"{key}.claim")

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy the entry to ``dest`` (atomically) when the store has it."""
        data = remote.read_bytes(self._entry(key))
        if data is None:
            return False
        write_atomic(dest, data)
        return True

    def discard(self, key: str) -> None:
        """A damaged entry on the store is removed, so that it is made again."""
        remote.delete(self._entry(key))

    def publish(self, key: str, path: Path) -> None:
        remote.write_bytes(self._entry(key), path.read_bytes())

    def _read_claim(self, key: str) -> dict | None:
        raw = remote.read_bytes(self._claim(key))
        try:
            return json.loads(raw) if raw else None
        except ValueError:  # cut short: as good as none
            return None

    def _write_claim(self, key: str, started: float) -> None:
        remote.write_bytes(self._claim(key), json.dumps({"holder": self.holder, "started": started,
                                                         "beat": time.time()}).encode())

    def _live(self, claim: dict | None) -> bool:
        return bool(claim) and time.time() - float(claim.get("beat", 0)) < self.lease_s

    def holder_of(self, key: str) -> str:
        """Who holds the claim on ``key``, as the claim says."""
        claim = self._read_claim(key)
        if not claim:
            return "no one (no claim on the store)"
        return (f"{claim.get('holder')}, working since {time.strftime('%H:%M:%S', time.localtime(claim['started']))} "
                f"(last heartbeat {time.time() - claim['beat']:.0f} s ago)")

    def wait_or_claim(self, key: str, dest: Path, note: Callable[[], Any] = lambda: None, note_s: float = 60) -> bool:
        """Return True once an entry from the store is at ``dest``; False once this process holds the claim (it
        makes it, inside :meth:`holding`). While it waits, ``note()`` every ``note_s`` seconds (it may raise)."""
        noted = time.monotonic()
        while True:
            if self.fetch(key, dest):
                return True
            claim = self._read_claim(key)
            if self._live(claim) and claim.get("holder") != self.holder:
                time.sleep(self.poll_s)  # another node makes it
                if time.monotonic() - noted >= note_s:
                    noted = time.monotonic()
                    note()
                continue
            self._write_claim(key, time.time())
            time.sleep(self.settle_s)
            claim = self._read_claim(key)
            if claim and claim.get("holder") == self.holder:
                return False

    @contextmanager
    def holding(self, key: str) -> Iterator[None]:
        """Beat the claim while the body makes the entry; the claim goes when it ends (an upload or an error)."""
        stop = threading.Event()
        started = time.time()

        def beat() -> None:
            while not stop.wait(self.lease_s / 4):
                try:
                    self._write_claim(key, started)
                except (StorageError, OSError):  # the store is unreachable for a moment: the next beat tries again
                    pass

        t = threading.Thread(target=beat, name=f"pt-claim-{key[:8]}", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()
            remote.delete(self._claim(key))
