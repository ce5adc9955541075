"""`tlsearch status` and `tlsearch report` read the experiment directory only: they import neither Ray nor
torch (seconds of start-up each, and nothing they need), checked in a fresh interpreter on an ended study."""

from __future__ import annotations

import subprocess
import sys

from tests.analysis.test_labels import SPEC, fake_experiment

CODE = """
import sys
from tlsearch.cli.main import main
codes = [main(["status", sys.argv[1]]), main(["report", sys.argv[1]])]
print("LOADED", sorted(m for m in ("ray", "torch", "alignn", "dgl") if m in sys.modules), codes)
"""


def test_status_and_report_import_neither_ray_nor_torch(tmp_path):
    exp = fake_experiment(tmp_path, SPEC)
    proc = subprocess.run([sys.executable, "-c", CODE, str(exp.root)], capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("LOADED")]
    assert proc.returncode == 0 and line == ["LOADED [] [0, 0]"], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "K_VRH (MP), 100 samples" in proc.stdout  # both commands did their work
