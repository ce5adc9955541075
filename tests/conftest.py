"""Shared fixtures: an isolated cache per test and a few small real crystal structures."""

from __future__ import annotations

import numpy as np
import pytest
from jarvis.core.atoms import Atoms


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty tlsearch cache (never the user's)."""
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setenv("DGLBACKEND", "pytorch")


def fcc(element: str = "Cu", a: float = 3.61) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0]], elements=[element], cartesian=False)


def rocksalt(a: float = 5.64) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0], [0.5, 0.5, 0.5]], elements=["Na", "Cl"], cartesian=False)


def diamond(a: float = 5.43) -> Atoms:
    lat = 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)
    return Atoms(lattice_mat=lat, coords=[[0, 0, 0], [0.25, 0.25, 0.25]], elements=["Si", "Si"], cartesian=False)


def structures(n: int = 12, seed: int = 0) -> list[Atoms]:
    """``n`` distinct small crystals: strained and rattled fcc/rock-salt/diamond cells."""
    rng = np.random.default_rng(seed)
    makers = [fcc, rocksalt, diamond]
    out = []
    for i in range(n):
        base = makers[i % 3]()
        lat = np.asarray(base.lattice_mat) @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)))
        frac = np.asarray(base.frac_coords) + rng.uniform(-0.01, 0.01, (base.num_atoms, 3))
        out.append(Atoms(lattice_mat=lat, coords=frac, elements=list(base.elements), cartesian=False))
    return out


@pytest.fixture
def small_structures() -> list[Atoms]:
    return structures()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's server mode, from PyPI) on 127.0.0.1 for this test session: its
    AWS_* environment (endpoint and fake credentials); each test makes its own bucket (see ``s3``)."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, "moto_server did not start"
            time.sleep(0.2)
    try:
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """A fresh bucket on the session's S3 server, with the AWS_* environment set: returns ``s3://<bucket>``."""
    import re

    import boto3

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-b"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}"
