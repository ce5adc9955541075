"""tlsearch.remote against a real S3-compatible server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import pytest

from tlsearch import remote
from tlsearch.errors import UserInputError


def test_locations():
    assert remote.is_remote("s3://b/x") and remote.is_remote("gs://b") and not remote.is_remote("/data/x")
    assert not remote.is_remote("file:///data/x") and not remote.is_remote(None) and not remote.is_remote("exp")
    assert remote.join("s3://b/x/", "/y", "z") == "s3://b/x/y/z"


def test_mirror_is_in_the_cache_and_stays_inside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSEARCH_CACHE", str(tmp_path / "c"))
    assert remote.mirror("s3://bkt/exps/smoke") == tmp_path / "c" / "remote" / "s3" / "bkt" / "exps" / "smoke"
    assert remote.mirror("s3://bkt/../../etc") == tmp_path / "c" / "remote" / "s3" / "bkt" / "etc"


def test_upload_download_round_trip_with_exclusions_and_skips(s3, tmp_path):
    src = tmp_path / "src"
    (src / "tune" / "t1" / "checkpoint_000001").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "tune" / "t1" / "result.json").write_text('{"x": 1}\n')
    (src / "tune" / "t1" / "checkpoint_000001" / "state.pt").write_bytes(b"big" * 1000)
    (src / ".hidden").write_text("never")
    uri = remote.join(s3, "exp")
    sent: dict = {}
    assert remote.upload(src, uri, sent=sent) == 3
    assert remote.upload(src, uri, sent=sent) == 0  # nothing changed since
    (src / "a.json").write_text('{"changed": true}')
    assert remote.upload(src, uri, sent=sent) == 1
    dest = tmp_path / "dest"
    assert remote.download(uri, dest, exclude=("tune/*/checkpoint_*/state.pt",)) == 2
    assert (dest / "a.json").read_text() == '{"changed": true}' and not (dest / ".hidden").exists()
    assert (dest / "tune" / "t1" / "result.json").read_text() == '{"x": 1}\n'
    assert not (dest / "tune" / "t1" / "checkpoint_000001").exists()
    assert remote.download(uri, dest, exclude=("tune/*/checkpoint_*/state.pt",)) == 0  # the same files
    assert remote.read_bytes(remote.join(uri, "a.json")) == b'{"changed": true}'
    assert remote.read_bytes(remote.join(uri, "nope")) is None and not remote.exists(remote.join(uri, "nope"))
    remote.write_bytes(remote.join(uri, "b"), b"1")
    assert remote.exists(remote.join(uri, "b"))
    remote.delete(remote.join(uri, "b"))
    remote.delete(remote.join(uri, "b"))  # already gone: no error
    assert not remote.exists(remote.join(uri, "b"))


def test_a_location_that_cannot_be_opened_is_the_users_to_fix():
    with pytest.raises(UserInputError, match=r"nosuchscheme://x: cannot open this storage location .*fix:"):
        remote.filesystem("nosuchscheme://x")


def test_env_forwards_only_the_object_store_settings(s3, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    env = remote.env()
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:") and "WANDB_API_KEY" not in env


def test_check_says_which_bucket_is_missing_or_unreachable(s3, monkeypatch):
    from tlsearch.errors import StorageError

    remote.check(remote.join(s3, "exps"))  # exists: fine
    with pytest.raises(StorageError, match=r"s3://no-such-bucket/exps: bucket 'no-such-bucket' does not exist; fix"):
        remote.check("s3://no-such-bucket/exps")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(StorageError, match=r"fix: check that the bucket exists and that AWS_ACCESS_KEY_ID"):
        remote.check(remote.join(s3, "exps"))


def _cli(*args: str, tmp_path) -> "subprocess.CompletedProcess":
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tlsearch.cli.main", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TLSEARCH_CACHE": str(tmp_path / "c")})


def test_bad_object_store_locations_through_the_cli(s3, tmp_path):
    """One line naming the location and the fix, exit 2, no traceback: a missing bucket in --storage and in
    cluster.pt_store and cluster.graph_store, and an experiment URI with nothing there (to status, and as a
    --warm-start source)."""
    import yaml

    from tests.search.test_run import SMOKE

    data = yaml.safe_load(SMOKE.read_text())
    data["cluster"] = {"pt_store": "s3://no-such-pt-bucket/pretrained"}
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(data))
    data["cluster"] = {"graph_store": "s3://no-such-graph-bucket/graphs"}
    graphs = tmp_path / "g.yaml"
    graphs.write_text(yaml.safe_dump(data))
    cases = [(("validate", str(spec)), "cluster.pt_store: s3://no-such-pt-bucket/pretrained: bucket"),
             (("validate", str(graphs)), "cluster.graph_store: s3://no-such-graph-bucket/graphs: bucket"),
             (("run", str(spec), "--storage", "s3://no-such-bucket/exps"), "--storage: s3://no-such-bucket/exps: bucket"),
             (("status", remote.join(s3, "exps", "nothing")), "not a tlsearch experiment (no spec.json there)"),
             (("run", str(SMOKE), "--warm-start", remote.join(s3, "exps", "gone")),
              f"{remote.join(s3, 'exps', 'gone')}: not a tlsearch experiment")]
    for args, says in cases:
        proc = _cli(*args, tmp_path=tmp_path)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
