"""The installed packages are exactly the ones constraints.txt pins (the set the tests ran with).

A fresh install resolves whatever the indexes hold that day; constraints.txt (written by `make lock`) pins
every package, so an install that differs means constraints.txt was not used or is stale. The fix is in the
message: reinstall with the pins, or upgrade deliberately (`make lock`, then the suite).
"""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tlsearch", "pip", "setuptools", "wheel"}
# tools a developer may add on top of the test install (the `dev` extra); pinned when present, not required
OPTIONAL = {"ruff"}
# the CUDA build of the pinned torch (a GPU install) brings these along, at the versions that torch requires
CUDA_BUILD = ("nvidia-", "triton")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not an exact pin (name==version)"
            pins[_norm(name)] = version.strip()
    return pins


def test_constraints_pin_every_installed_package_exactly():
    pins = _pins(ROOT / "constraints.txt")
    # the environment's site-packages only: sys.path also holds what libraries vendor (Ray puts its
    # thirdparty_files, with colorama in it, on sys.path once imported), which pip did not install
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = {_norm(d.metadata["Name"]): d.version.split("+")[0] for d in metadata.distributions(path=site)}
    wrong = sorted(f"{n}=={v} (pinned {pins[n]})" for n, v in installed.items() if n in pins and pins[n] != v)
    unpinned = sorted(f"{n}=={v}" for n, v in installed.items() if n not in pins and n not in SKIP | OPTIONAL
                      and not n.startswith(CUDA_BUILD))
    assert not wrong and not unpinned, (
        f"installed packages differ from constraints.txt: versions {wrong}, not pinned {unpinned}; reinstall with "
        "`pip install -c constraints.txt -e '.[test,dgl]'`, or to upgrade on purpose run `make lock` and the suite")


def test_constraints_keep_the_hand_written_pins():
    """constraints.txt is generated from constraints.in: each hand-written pin holds in it."""
    pins, wanted = _pins(ROOT / "constraints.txt"), _pins(ROOT / "constraints.in")
    assert {n: pins.get(n) for n in wanted} == wanted, "run `make lock` after changing constraints.in"
    assert {"typer", "click", "pyarrow", "numpy", "pydantic", "ray", "optuna", "wandb", "torch"} <= set(pins)
