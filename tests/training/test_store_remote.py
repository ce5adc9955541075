"""The PT store on an object store (``cluster.pt_store: s3://...``), as nodes that share no filesystem use it:
each process below has its own cache (its own mirror), and they meet only on a real S3-compatible server
(moto's server mode on 127.0.0.1): trained once, a claim instead of a lock, a dead trainer's claim taken over
once its heartbeat stops, a damaged entry on the store retrained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.test_store import (MATERIAL, REPO, WORKER, CountingTrain, _await_training,
                                       _kill_trainer_while_survivor_waits, _states_equal)
from tlsearch import remote
from tlsearch.training.store import PretrainStore


def _node(tmp_path: Path, uri: str, tag: str, n_ready: int, sleep_s: float, lease_s: float = 60,
          **more: str) -> subprocess.Popen:
    """A process with a cache of its own (a node) asking the store at ``uri`` for the same PT model."""
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
        (tmp_path / "flags").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TLSEARCH_CACHE": str(tmp_path / f"cache-{tag}"),
           "TLSEARCH_STORE_LEASE_S": str(lease_s), **more}
    return subprocess.Popen([sys.executable, str(script), uri, str(tmp_path / "counter.txt"), str(tmp_path / "flags"),
                             tag, str(n_ready), str(sleep_s)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _keys(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = remote.filesystem(uri)
    return sorted(Path(i.path).name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))


@pytest.mark.timeout(180)
def test_two_nodes_train_once_through_the_object_store(s3, tmp_path, monkeypatch):
    uri = remote.join(s3, "pretrained")
    procs = [_node(tmp_path, uri, tag, 2, 2.0) for tag in ("a", "b")]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len((tmp_path / "counter.txt").read_text().splitlines()) == 1  # one node trained
    assert sorted(r["hit"] for r in results) == [False, True]
    hit = next(r for r in results if r["hit"])
    assert hit["wait"] > 0.5 and results[0]["w"] == results[1]["w"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    key = results[0]["key"]
    assert _keys(uri) == [f"{key}.pt"]  # the entry, and no claim left behind
    # a third node, with an empty cache, loads it from the store without training
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "cache-c"))
    train = CountingTrain()
    e = PretrainStore(uri).get_or_train({"material": "concurrent"}, train)
    assert e.hit and train.calls == 0 and e.path.is_relative_to(tmp_path / "cache-c")


@pytest.mark.timeout(180)
def test_a_killed_trainers_claim_is_taken_over_when_its_heartbeat_stops(s3, tmp_path):
    uri = remote.join(s3, "pretrained")
    victim = _node(tmp_path, uri, "victim", 1, 600.0, lease_s=3)
    _await_training(tmp_path, "victim", victim)
    assert any(k.endswith(".claim") for k in _keys(uri))
    # the survivor waits on the victim's live claim (it beats every 0.75 s)
    r, killed = _kill_trainer_while_survivor_waits(
        tmp_path, victim, lambda: _node(tmp_path, uri, "survivor", 1, 0.2, lease_s=3), 4)
    assert r["hit"] is False and r["by"] == "survivor" and r["wait"] > 1.5
    # it trained only once the dead claim's heartbeat was a lease (3 s) old: at least 3 s - one beat after the kill
    assert (tmp_path / "flags" / "started-survivor").stat().st_mtime - killed > 3 - 3 / 4 - 0.1
    assert (tmp_path / "counter.txt").read_text().splitlines() == ["victim", "survivor"]
    assert _keys(uri) == [f"{r['key']}.pt"]


def test_a_damaged_entry_on_the_store_is_removed_and_trained_again(s3, tmp_path, monkeypatch):
    uri = remote.join(s3, "pretrained")
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "node1"))
    first = PretrainStore(uri).get_or_train(MATERIAL, CountingTrain())
    entry = remote.join(uri, f"{first.key}.pt")
    data = bytearray(remote.read_bytes(entry))
    data[-5] ^= 0xFF
    remote.write_bytes(entry, bytes(data))
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "node2"))  # a node that has no copy of its own
    train = CountingTrain()
    again = PretrainStore(uri).get_or_train(MATERIAL, train)
    assert train.calls == 1 and not again.hit and _states_equal(again.state, first.state)
    assert PretrainStore(uri).load(first.key) is not None
    assert remote.read_bytes(entry) == again.path.read_bytes()  # the store holds the good one again
    assert torch.equal(next(iter(again.state.values())), next(iter(first.state.values())))


@pytest.mark.timeout(180)
def test_a_waiter_names_the_claim_holder_and_gives_up_after_the_wait_limit(s3, tmp_path):
    """A node that hangs while it trains keeps beating its claim; another node waits, says whom it waits for, and
    past TLSEARCH_PT_WAIT_S fails with PretrainWaitError naming the claim's holder."""
    uri = remote.join(s3, "pretrained")
    hung = _node(tmp_path, uri, "hung", 1, 600.0)
    try:
        _await_training(tmp_path, "hung", hung)
        waiter = _node(tmp_path, uri, "waiter", 1, 0.1, TLSEARCH_PT_WAIT_S="3", TLSEARCH_PT_NOTE_S="1")
        out, err = waiter.communicate(timeout=120)
        assert hung.poll() is None
    finally:
        hung.kill()
        hung.communicate(timeout=30)
    assert waiter.returncode != 0 and "PretrainWaitError" in err, err[-2000:]
    assert f":{hung.pid}:" in err.splitlines()[-1] and "last heartbeat" in err.splitlines()[-1], err[-2000:]

