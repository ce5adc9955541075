"""Graph packs on a shared store (``cluster.graph_store``), as nodes use it: each process below has a cache of
its own, and they meet only on a real S3-compatible server (moto's server mode on 127.0.0.1) or on a shared
directory. A pack is built once for all nodes; a node SIGKILLed while it builds leaves no pack, and another
takes over once its claim's heartbeat stops; a damaged pack on the store is built again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import structures
from tlsearch import remote
from tlsearch.graphs import GraphCache

REPO = Path(__file__).resolve().parents[2]
NODE = """import sys, time
from pathlib import Path
from tests.conftest import structures
from tlsearch.graphs import GraphCache
tag, delay, flags = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
def slow(done, n):
    (flags / ("building-" + tag)).touch()
    time.sleep(delay)
gs = GraphCache(workers=1).get(structures(12), progress=slow)
print(tag, len(gs.pack), gs.hit)
"""


def _node(tmp_path: Path, store: str, tag: str, delay: float, lease_s: float = 60) -> subprocess.Popen:
    """A process with a cache of its own (a node) asking the graph store for the same 12 structures' graphs;
    each progress step of its build sleeps ``delay`` s."""
    flags = tmp_path / "flags"
    flags.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TLSEARCH_CACHE": str(tmp_path / f"cache-{tag}"),
           "TLSEARCH_GRAPH_STORE": store, "TLSEARCH_STORE_LEASE_S": str(lease_s)}
    return subprocess.Popen([sys.executable, "-c", NODE, tag, str(delay), str(flags)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _names(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = remote.filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.File)


def _same_graphs(a, b) -> None:  # noqa: ANN001
    assert a.pack.keys == b.pack.keys
    for i in range(len(a.pack)):
        for name, arr in a.pack.graph(i).items():
            np.testing.assert_array_equal(arr, b.pack.graph(i)[name])


@pytest.mark.timeout(240)
def test_two_nodes_build_a_pack_once_through_the_object_store(s3, tmp_path, monkeypatch):
    uri = remote.join(s3, "graphs")
    procs = [_node(tmp_path, uri, tag, 0.5) for tag in ("a", "b")]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=200)
        assert p.returncode == 0, err[-2000:]
        outs.append(out.split())
    assert sorted(o[1:] for o in outs) == [["12", "False"], ["12", "True"]]  # one built, the other downloaded
    assert len([f for f in (tmp_path / "flags").iterdir()]) == 1
    names = _names(uri)
    assert len(names) == 1 and names[0].endswith(".tlg"), names  # the pack, and no claim left behind
    # a third node, with an empty cache, takes it from the store; its graphs are those a local build makes
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "cache-c"))
    got = GraphCache(workers=1, store=uri).get(structures(12))
    assert got.hit and got.path.is_relative_to(tmp_path / "cache-c")
    _same_graphs(got, GraphCache(root=tmp_path / "local", workers=1).get(structures(12)))


@pytest.mark.timeout(300)
def test_a_node_killed_while_it_builds_is_taken_over_when_its_heartbeat_stops(s3, tmp_path):
    uri = remote.join(s3, "graphs")
    victim = _node(tmp_path, uri, "victim", 600, lease_s=3)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "flags" / "building-victim").exists():
            assert victim.poll() is None and time.time() < deadline, victim.communicate()[1][-2000:]
            time.sleep(0.05)
        assert any(n.endswith(".claim") for n in _names(uri))
        survivor = _node(tmp_path, uri, "survivor", 0, lease_s=3)
        time.sleep(8)  # it imports, finds no pack, and waits on the victim's live claim (a beat every 0.75 s)
        assert survivor.poll() is None and not (tmp_path / "flags" / "building-survivor").exists()
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        killed = time.time()
        out, err = survivor.communicate(timeout=240)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert survivor.returncode == 0 and out.split() == ["survivor", "12", "False"], err[-2000:]
    # it built only once the dead claim's heartbeat was a lease (3 s) old
    assert (tmp_path / "flags" / "building-survivor").stat().st_mtime - killed > 3 - 3 / 4 - 0.1
    names = _names(uri)
    assert len(names) == 1 and names[0].endswith(".tlg"), names
    assert not list((tmp_path / "cache-victim").rglob("*.tlg"))  # the dead node left no pack behind


def test_a_damaged_pack_on_the_store_is_removed_and_built_again(s3, tmp_path, monkeypatch):
    uri = remote.join(s3, "graphs")
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "node1"))
    first = GraphCache(workers=1, store=uri).get(structures(6))
    assert not first.hit
    entry = remote.join(uri, first.path.parent.name, first.path.name)
    data = bytearray(remote.read_bytes(entry))
    data[-5] ^= 0xFF
    remote.write_bytes(entry, bytes(data))
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "node2"))  # a node that has no copy of its own
    again = GraphCache(workers=1, store=uri).get(structures(6))
    assert not again.hit
    _same_graphs(first, again)
    assert remote.read_bytes(entry) == again.path.read_bytes()  # the store holds a good pack again


def test_the_environment_names_the_store_a_directory_every_node_mounts(tmp_path, monkeypatch):
    """``TLSEARCH_GRAPH_STORE`` (set on every worker from ``cluster.graph_store``) wins over the cache."""
    monkeypatch.setenv("TLSEARCH_GRAPH_STORE", str(tmp_path / "shared"))
    built = GraphCache(root=tmp_path / "node1", workers=1).get(structures(4))
    reused = GraphCache(root=tmp_path / "node2", workers=1).get(structures(4))
    assert not built.hit and reused.hit and built.path == reused.path
    assert built.path.is_relative_to(tmp_path / "shared") and not (tmp_path / "node1").exists()
