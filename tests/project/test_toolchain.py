"""The development toolchain: the library keeps ranges, and a stale lock fails `make check`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools" / "bin" / "uv"


def test_library_dependencies_are_ranges() -> None:
    """What users install with livestate (its dependencies and extras) pins nothing exactly:
    exact versions live only in uv.lock, for our own development environment."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    assert requirements
    pinned = [r for r in requirements if re.search(r"===?|<", r)]
    assert pinned == [], f"the library's own requirements must be ranges: {pinned}"


def lock_check(tmp_path: Path, pyproject: str) -> subprocess.CompletedProcess[str]:
    """Run `make lock-check` on a copy of the project's lock beside `pyproject`."""
    for name in ("Makefile", "uv.lock", "scripts/uv.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)  # mtimes kept: make must not reinstall uv
    (tmp_path / "pyproject.toml").write_text(pyproject)
    return subprocess.run(
        ["make", "-s", "lock-check", f"UV={UV}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_stale_lock_fails_the_check_and_says_what_to_run(tmp_path: Path) -> None:
    """The lock as committed passes; once pyproject.toml asks for something else (here a dev
    tool dropped), the check fails with a sentence naming `uv lock` and `make upgrade`."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    fresh = lock_check(tmp_path, pyproject)
    assert fresh.returncode == 0, fresh.stderr
    stale = lock_check(tmp_path, pyproject.replace('    "ruff>=0.6",\n', "", 1))
    assert stale.returncode != 0
    assert "uv.lock does not match pyproject.toml" in stale.stderr
    assert "make upgrade" in stale.stderr and f"{UV} lock" in stale.stderr
