"""The shared tier's claims on a real S3-compatible server (moto, 127.0.0.1). Its users' tests run whole
nodes against it: tests/training/test_store_remote.py (PT models), tests/graphs/test_cache_remote.py (graph
packs)."""

from __future__ import annotations

from tlsearch import remote
from tlsearch._remote_tier import RemoteTier


def test_the_heartbeat_outlives_a_moment_without_the_store(s3, monkeypatch):
    """A beat that cannot reach the store (StorageError) is skipped, not the end of the heartbeat: the next beat
    writes the claim again, so other nodes do not take over an entry that is still being made."""
    import time

    from tlsearch.errors import StorageError

    tier = RemoteTier(remote.join(s3, "entries"), ".bin", lease_s=0.4)
    beats, write = [], tier._write_claim

    def flaky(key: str, started: float) -> None:
        beats.append(time.time())
        if len(beats) == 1:
            raise StorageError("s3://...: unreachable for a moment")
        write(key, started)

    monkeypatch.setattr(tier, "_write_claim", flaky)
    with tier.holding("k" * 32):
        time.sleep(0.6)
        assert len(beats) >= 3 and tier._live(tier._read_claim("k" * 32))
    assert tier._read_claim("k" * 32) is None  # the claim goes with the holder
