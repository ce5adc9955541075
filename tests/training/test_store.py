"""PretrainStore: train once per key, serialise concurrent requests, survive crashes and damaged or
malicious entries (checksummed, atomic, ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tlsearch._io import read_checksummed, write_checksummed
from tlsearch.training.config import ModelSpec
from tlsearch.training.model import PropertyModel
from tlsearch.training.store import FORMAT, PretrainStore

REPO = Path(__file__).resolve().parents[2]
TINY = ModelSpec(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8,
                 edge_input_features=16, triplet_input_features=8)
MATERIAL = {"sources": [["emt:alloys?n=40&seed=0", "bulk_modulus"]], "seed": 0, "model": TINY.model_dump()}


class CountingTrain:
    """A train function that records its calls and returns a real (tiny) model state."""

    def __init__(self, seed: int = 0) -> None:
        self.calls = 0
        self.seed = seed

    def __call__(self) -> tuple[dict[str, torch.Tensor], dict]:
        self.calls += 1
        torch.manual_seed(self.seed)
        model = PropertyModel(TINY)
        return {k: v.clone() for k, v in model.state_dict().items()}, {"epochs": 3, "val_mae": 1.5}


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _leftovers(root: Path) -> list[Path]:
    """Entries and temporary files (lock files, and the holder file a killed trainer leaves, may remain: they
    hold no data; the next holder overwrites it)."""
    return (sorted(p for p in root.glob("*") if not p.name.endswith((".lock", ".holder")))
            + sorted(root.glob(".*.tmp")))


# ---- train once, then hit -----------------------------------------------------------------------

def test_trains_once_then_hits(tmp_path):
    store = PretrainStore(tmp_path / "store")
    train = CountingTrain()
    first = store.get_or_train(MATERIAL, train)
    assert train.calls == 1
    assert first.hit is False and first.wait_seconds >= 0
    assert first.path == store.path(first.key) and first.path.is_file()
    assert first.meta["pt_seconds"] >= 0 and first.meta["epochs"] == 3 and first.meta["val_mae"] == 1.5
    assert first.meta["material"] == MATERIAL

    again = store.get_or_train(dict(MATERIAL), train)  # an equal (not identical) material
    assert train.calls == 1, "the second request must reuse the stored entry"
    assert again.hit is True and again.wait_seconds == 0.0
    assert again.key == first.key
    assert _states_equal(again.state, first.state)
    assert again.meta["pt_seconds"] >= 0 and again.meta["pt_seconds"] == first.meta["pt_seconds"]
    assert again.meta["material"] == MATERIAL

    # a fresh store object on the same directory (another process, another node) also hits
    third = PretrainStore(tmp_path / "store").get_or_train(MATERIAL, train)
    assert train.calls == 1 and third.hit and _states_equal(third.state, first.state)


def test_different_material_different_key(tmp_path):
    store = PretrainStore(tmp_path / "store")
    train = CountingTrain()
    a = store.get_or_train(MATERIAL, train)
    other = {**MATERIAL, "seed": 1}
    assert store.key(other) != store.key(MATERIAL)
    b = store.get_or_train(other, CountingTrain(seed=1))
    assert b.hit is False and b.key != a.key and b.path != a.path
    assert a.path.is_file() and b.path.is_file()
    # key order in the material does not matter; values do
    assert store.key(dict(reversed(list(MATERIAL.items())))) == store.key(MATERIAL)
    assert store.key({**MATERIAL, "model": {**MATERIAL["model"], "hidden_features": 32}}) != store.key(MATERIAL)


def test_default_root_is_under_the_cache(tmp_path):
    # conftest points TLSEARCH_CACHE at tmp_path / "tlcache"
    assert PretrainStore().root == tmp_path / "tlcache" / "pretrained"


# ---- concurrent processes -----------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    from tlsearch.training.store import PretrainStore

    root, counter, flags, tag, n_ready, sleep_s = sys.argv[1:7]
    flags = Path(flags)

    def train():
        with open(counter, "a") as fh:
            fh.write(tag + "\\n")
        (flags / f"started-{tag}").touch()
        time.sleep(float(sleep_s))
        return {"w": torch.arange(6.0).reshape(2, 3), "b": torch.full((3,), 7.0)}, {"by": tag}

    # barrier: every process has finished importing before any asks the store
    (flags / f"ready-{tag}").touch()
    deadline = time.time() + 120
    while len(list(flags.glob("ready-*"))) < int(n_ready):
        if time.time() > deadline:
            sys.exit("barrier timed out")
        time.sleep(0.01)
    e = PretrainStore(root).get_or_train({"material": "concurrent"}, train)
    print(json.dumps({"hit": e.hit, "wait": e.wait_seconds, "key": e.key, "by": e.meta["by"],
                      "w": e.state["w"].tolist(), "b": e.state["b"].tolist()}))
    """
)


def _spawn(tmp_path: Path, tag: str, n_ready: int, sleep_s: float, **env: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), str(tmp_path / "counter.txt"),
         str(tmp_path / "flags"), tag, str(n_ready), str(sleep_s)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def _await_training(tmp_path: Path, tag: str, proc: subprocess.Popen) -> None:
    """Wait until the worker ``tag`` (``proc``) is inside its train function; fail if it exits first."""
    deadline = time.time() + 120
    while not (tmp_path / "flags" / f"started-{tag}").exists():
        assert proc.poll() is None, f"{tag} exited before training: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"{tag} never started training"
        time.sleep(0.02)


def _kill_trainer_while_survivor_waits(tmp_path: Path, victim: subprocess.Popen,
                                      start_survivor: Callable[[], subprocess.Popen],
                                      wait_s: float) -> tuple[dict, float]:
    """With ``victim`` inside its train function, start the survivor; after ``wait_s`` it must still be waiting (not
    training); SIGKILL the victim and return the survivor's result and the time of the kill. Both processes are
    gone afterwards, whatever happens."""
    survivor = None
    try:
        _await_training(tmp_path, "victim", victim)
        survivor = start_survivor()
        deadline = time.time() + 120
        while not (tmp_path / "flags" / "ready-survivor").exists():
            assert survivor.poll() is None and time.time() < deadline, survivor.communicate()[1]
            time.sleep(0.02)
        time.sleep(wait_s)  # it asks the store and waits on the victim
        assert survivor.poll() is None and not (tmp_path / "flags" / "started-survivor").exists()
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.time()
        out, err = survivor.communicate(timeout=120)
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()
        victim.communicate(timeout=30)
    assert survivor.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), killed


@pytest.mark.timeout(180)
def test_concurrent_processes_train_once(tmp_path):
    (tmp_path / "flags").mkdir()
    procs = [_spawn(tmp_path, tag, 2, 2.0) for tag in ("a", "b")]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    lines = (tmp_path / "counter.txt").read_text().splitlines()
    assert len(lines) == 1, f"trained {len(lines)} times: {lines}"
    trainer = lines[0]

    assert sorted(r["hit"] for r in results) == [False, True]
    miss = next(r for r in results if not r["hit"])
    hit = next(r for r in results if r["hit"])
    assert miss["by"] == hit["by"] == trainer
    assert hit["wait"] > 0, "the second process must have waited on the lock"
    assert hit["wait"] > 0.5  # it waited for (most of) the 2 s training
    assert miss["key"] == hit["key"]
    assert miss["w"] == hit["w"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert miss["b"] == hit["b"] == [7.0, 7.0, 7.0]
    store = PretrainStore(tmp_path / "store")
    assert store.path(miss["key"]).is_file()
    assert not list(store.root.glob(".*.tmp"))


# ---- crashes leave nothing behind ---------------------------------------------------------------

def test_exception_in_training_leaves_no_entry(tmp_path):
    store = PretrainStore(tmp_path / "store")

    def boom():
        raise RuntimeError("out of memory, say")

    with pytest.raises(RuntimeError, match="out of memory"):
        store.get_or_train(MATERIAL, boom)
    key = store.key(MATERIAL)
    assert not store.path(key).exists()
    assert _leftovers(store.root) == []
    assert store.load(key) is None

    train = CountingTrain()
    entry = store.get_or_train(MATERIAL, train)  # the lock was released: this does not hang
    assert entry.hit is False and train.calls == 1
    assert store.get_or_train(MATERIAL, train).hit is True and train.calls == 1


def test_crash_while_writing_leaves_no_entry_or_temp_file(tmp_path, monkeypatch):
    import tlsearch._io as tio

    store = PretrainStore(tmp_path / "store")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        store.get_or_train(MATERIAL, CountingTrain())
    monkeypatch.undo()
    assert _leftovers(store.root) == []

    train = CountingTrain()
    entry = store.get_or_train(MATERIAL, train)
    assert entry.hit is False and train.calls == 1 and entry.path.is_file()


@pytest.mark.timeout(180)
def test_sigkill_during_training_leaves_no_entry(tmp_path):
    (tmp_path / "flags").mkdir()
    proc = _spawn(tmp_path, "victim", 1, 600.0)  # trains "forever"
    try:
        _await_training(tmp_path, "victim", proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    store = PretrainStore(tmp_path / "store")
    key = store.key({"material": "concurrent"})
    assert not store.path(key).exists()
    assert _leftovers(store.root) == []

    # the dead process's lock does not block the next request, which trains
    calls = []

    def train():
        calls.append(1)
        return {"w": torch.ones(2)}, {"by": "survivor"}

    entry = store.get_or_train({"material": "concurrent"}, train)
    assert entry.hit is False and calls == [1] and entry.meta["by"] == "survivor"
    assert store.get_or_train({"material": "concurrent"}, train).hit is True and calls == [1]


@pytest.mark.timeout(180)
def test_the_waiting_process_takes_over_when_the_trainer_is_killed(tmp_path):
    """Two processes (two nodes on a shared store) ask for the same PT model; the one training is SIGKILLed
    while the other waits on the lock: the waiter gets the lock (the kernel releases a dead process's lock;
    no stale lock to clear by hand), trains the model itself and stores a valid entry; nothing of the dead
    trainer is left."""
    (tmp_path / "flags").mkdir()
    victim = _spawn(tmp_path, "victim", 1, 600.0)
    r, _ = _kill_trainer_while_survivor_waits(tmp_path, victim, lambda: _spawn(tmp_path, "survivor", 1, 0.5), 2)
    assert r["hit"] is False and r["by"] == "survivor" and r["wait"] > 1.5  # it waited, then trained
    assert (tmp_path / "counter.txt").read_text().splitlines() == ["victim", "survivor"]
    store = PretrainStore(tmp_path / "store")
    entry = store.load(r["key"])
    assert entry is not None and entry.meta["by"] == "survivor" and _leftovers(store.root) == [entry.path]


@pytest.mark.timeout(180)
def test_a_waiter_names_a_hung_trainer_and_gives_up_after_the_wait_limit(tmp_path):
    """A trainer that hangs without dying keeps its lock: the waiter says every TLSEARCH_PT_NOTE_S seconds whom it
    waits for (host, pid, since when) and, past TLSEARCH_PT_WAIT_S, fails with PretrainWaitError naming it,
    instead of waiting for ever; the hung trainer is not disturbed."""
    (tmp_path / "flags").mkdir()
    hung = _spawn(tmp_path, "hung", 1, 600.0)
    try:
        _await_training(tmp_path, "hung", hung)
        waiter = _spawn(tmp_path, "waiter", 1, 0.1, TLSEARCH_PT_WAIT_S="3", TLSEARCH_PT_NOTE_S="1")
        out, err = waiter.communicate(timeout=120)
        assert hung.poll() is None  # still training
    finally:
        hung.kill()
        hung.communicate(timeout=30)
    assert waiter.returncode != 0 and "PretrainWaitError" in err, err[-2000:]
    assert f"pid {hung.pid}, training since" in err.splitlines()[-1] and "TLSEARCH_PT_WAIT_S=3" in err, err[-2000:]
    notes = [ln for ln in err.splitlines() if ": waiting " in ln and f"pid {hung.pid}" in ln]
    assert len(notes) >= 2, err[-2000:]  # it said whom it waited for, each second
    assert not (tmp_path / "flags" / "started-waiter").exists()


# ---- damaged entries ----------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def _flip_payload_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01  # inside the payload, past the header
    path.write_bytes(bytes(data))


def _flip_header_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))


def _garble_magic(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_payload_bit, _flip_header_byte, _garble_magic,
                                    lambda p: p.write_bytes(b"")])
def test_damaged_entry_is_detected_deleted_and_retrained(tmp_path, damage):
    store = PretrainStore(tmp_path / "store")
    train = CountingTrain()
    good = store.get_or_train(MATERIAL, train)
    damage(good.path)

    assert store.load(good.key) is None, "a damaged entry must not load"
    assert not good.path.exists(), "a damaged entry must be deleted"

    damage_again = store.get_or_train(MATERIAL, train)  # nothing there: trains
    assert damage_again.hit is False and train.calls == 2

    damage(good.path)
    retrained = store.get_or_train(MATERIAL, train)  # damaged again: detected inside get_or_train
    assert retrained.hit is False and train.calls == 3
    assert _states_equal(retrained.state, good.state)
    header, _ = read_checksummed(retrained.path)  # the new file is whole
    assert header["format"] == FORMAT and header["key"] == good.key
    assert store.get_or_train(MATERIAL, train).hit is True and train.calls == 3


def test_entry_of_another_format_is_retrained(tmp_path):
    store = PretrainStore(tmp_path / "store")
    key = store.key(MATERIAL)
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    write_checksummed(store.path(key), buf.getvalue(), {"format": "tlsearch-pretrained-v0", "key": key,
                                                        "meta": {}})
    train = CountingTrain()
    entry = store.get_or_train(MATERIAL, train)
    assert entry.hit is False and train.calls == 1 and "w" not in entry.state


# ---- entries are data, never code ---------------------------------------------------------------

class _Payload:
    """An arbitrary class: unpickling it would need this module's global, which weights_only refuses."""

    def __init__(self) -> None:
        self.x = 1


class _RunsCode:
    marker: str = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensFile:
    marker: str = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payloads(marker: Path) -> dict[str, bytes]:
    _RunsCode.marker = str(marker)
    _OpensFile.marker = str(marker)
    out = {}
    for name, obj in {"os.system": _RunsCode(), "open": _OpensFile(), "instance": _Payload()}.items():
        buf = io.BytesIO()
        torch.save({"body.w": torch.zeros(2), "evil": obj}, buf)  # the zip format torch.load expects
        out[f"torch.save/{name}"] = buf.getvalue()
        out[f"pickle/{name}"] = pickle.dumps(obj)  # a bare pickle stream
    out["garbage"] = b"this is not a torch file at all"
    return out


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", sorted(_payloads(Path("x"))))
def test_malicious_entry_is_refused_and_never_executed(tmp_path, kind):
    marker = tmp_path / "PWNED"
    payload = _payloads(marker)[kind]
    store = PretrainStore(tmp_path / "store")
    key = store.key(MATERIAL)
    write_checksummed(store.path(key), payload, {"format": FORMAT, "key": key,
                                                 "meta": {"pt_seconds": 0.0, "material": MATERIAL}})
    read_checksummed(store.path(key))  # the checksum itself is valid: only the payload is hostile

    assert store.load(key) is None
    assert not store.path(key).exists(), "a refused entry is discarded like a damaged one"
    assert not marker.exists(), "loading an entry must never run code"

    write_checksummed(store.path(key), payload, {"format": FORMAT, "key": key,
                                                 "meta": {"pt_seconds": 0.0, "material": MATERIAL}})
    train = CountingTrain()
    entry = store.get_or_train(MATERIAL, train)
    assert entry.hit is False and train.calls == 1
    assert not marker.exists()
    assert "evil" not in entry.state
    assert store.get_or_train(MATERIAL, train).hit is True and train.calls == 1
