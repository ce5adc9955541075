import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tlsearch.graphs.cache as cache_mod
from tests.conftest import structures
from tlsearch.graphs import GraphCache, GraphParams


def _same(gs_a, gs_b, n):
    for i in range(n):
        a, b = gs_a.pack.graph(gs_a.row[i]), gs_b.pack.graph(gs_b.row[i])
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_second_get_is_a_hit_with_identical_graphs(tmp_path):
    atoms = structures(6)
    c = GraphCache(root=tmp_path)
    first = c.get(atoms)
    second = c.get(atoms)
    assert not first.hit and second.hit
    assert first.path == second.path and first.path.parent.parent == tmp_path / "graphs"
    _same(first, second, 6)


def test_parameter_change_invalidates(tmp_path):
    atoms = structures(3)
    a = GraphCache(GraphParams(), root=tmp_path).get(atoms)
    b = GraphCache(GraphParams(max_neighbors=8), root=tmp_path).get(atoms)
    assert not b.hit and a.path != b.path
    assert len(b.pack.graph(0)["src"]) < len(a.pack.graph(0)["src"])


def test_content_change_invalidates(tmp_path):
    atoms = structures(3)
    c = GraphCache(root=tmp_path)
    c.get(atoms)
    moved = structures(3, seed=1)
    assert not c.get(moved).hit


def test_reordered_or_subset_request_reuses_built_graphs(tmp_path, monkeypatch):
    atoms = structures(6)
    c = GraphCache(root=tmp_path)
    full = c.get(atoms)
    calls = []
    real = cache_mod.build_arrays
    monkeypatch.setattr(cache_mod, "build_arrays", lambda a, p: calls.append(1) or real(a, p))
    sub = c.get([atoms[4], atoms[1]])
    assert not sub.hit and calls == []  # new pack, but every graph came from the existing pack
    np.testing.assert_array_equal(sub.pack.graph(0)["r"], full.pack.graph(full.row[4])["r"])


def test_failures_are_recorded_and_cached(tmp_path):
    from jarvis.core.atoms import Atoms

    lonely = Atoms(lattice_mat=np.eye(3) * 30.0, coords=[[0, 0, 0]], elements=["Cu"], cartesian=False)
    atoms = structures(2) + [lonely]
    c = GraphCache(root=tmp_path)
    gs = c.get(atoms)
    assert gs.row.tolist() == [0, 1, -1] and gs.failures[2][0] == "isolated atom"
    again = c.get(atoms)
    assert again.hit and again.failures == gs.failures


def test_truncated_pack_is_detected_and_rebuilt(tmp_path):
    atoms = structures(4)
    c = GraphCache(root=tmp_path)
    gs = c.get(atoms)
    good = gs.path.read_bytes()
    gs.path.write_bytes(good[: len(good) // 2])
    again = c.get(atoms)
    assert not again.hit
    _same(gs, again, 4)
    assert again.path.read_bytes() == good


def test_crash_while_writing_leaves_no_entry(tmp_path, monkeypatch):
    atoms = structures(3)
    c = GraphCache(root=tmp_path)

    def boom(src, dst):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        c.get(atoms)
    monkeypatch.undo()
    assert list(c.dir.glob("*.tlg")) == [] and list(c.dir.glob("*.tmp")) == []
    assert not c.get(atoms).hit and c.get(atoms).hit


def test_parallel_build_equals_serial(tmp_path):
    atoms = structures(10)
    serial = GraphCache(root=tmp_path / "a", workers=1).get(atoms)
    parallel = GraphCache(root=tmp_path / "b", workers=2, parallel_min=1).get(atoms)
    _same(serial, parallel, 10)


def test_two_processes_share_one_cache(tmp_path):
    """Two processes ask for the same graphs at once: both get them, and one pack file results."""
    code = ("import sys; sys.path.insert(0, %r); from tests.conftest import structures; "
            "from tlsearch.graphs import GraphCache; gs = GraphCache(root=%r).get(structures(40)); "
            "print(len(gs.pack))") % (os.getcwd(), str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs == ["40", "40"]
    assert len(list((tmp_path / "graphs").rglob("*.tlg"))) == 1


def test_building_does_not_change_the_callers_torch_threads(tmp_path):
    import torch

    before = torch.get_num_threads()
    GraphCache(root=tmp_path, workers=1).get(structures(3))
    assert torch.get_num_threads() == before


@pytest.mark.timeout(300)
def test_a_builder_killed_mid_pack_leaves_nothing_and_the_waiting_process_builds(tmp_path):
    """Two processes (two nodes on a shared cache) ask for the same graphs; the one building is SIGKILLed
    mid-pack while the other waits on the lock: no pack or temporary file is left by the dead one, and the
    waiting process takes the lock (released by the kernel with the dead process) and builds the pack."""
    flags = tmp_path / "flags"
    flags.mkdir()
    code = ("import sys, time; from pathlib import Path; sys.path.insert(0, %r); "
            "from tests.conftest import structures; from tlsearch.graphs import GraphCache; "
            "tag, delay = sys.argv[1], float(sys.argv[2]); "
            "f = Path(%r); "
            "slow = lambda done, n: ((f / ('building-' + tag)).touch(), time.sleep(delay)); "
            "gs = GraphCache(root=%r, workers=1).get(structures(12), progress=slow); "
            "print(tag, len(gs.pack), gs.hit)") % (os.getcwd(), str(flags), str(tmp_path))
    victim = subprocess.Popen([sys.executable, "-c", code, "victim", "60"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (flags / "building-victim").exists():
            assert victim.poll() is None and time.time() < deadline, "the first process never started building"
            time.sleep(0.05)
        survivor = subprocess.Popen([sys.executable, "-c", code, "survivor", "0"], stdout=subprocess.PIPE, text=True)
        time.sleep(8)  # it imports, finds no pack and waits on the lock the victim holds
        assert survivor.poll() is None and not (flags / "building-survivor").exists()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        out = survivor.communicate(timeout=240)[0].strip()
    finally:
        for p in (victim,):
            if p.poll() is None:
                p.kill()
    assert survivor.returncode == 0 and out == "survivor 12 False", out
    packs = list((tmp_path / "graphs").rglob("*.tlg"))
    assert len(packs) == 1 and not list((tmp_path / "graphs").rglob("*.tmp"))
    again = GraphCache(root=tmp_path, workers=1).get(structures(12))
    assert again.hit and len(again.pack) == 12
