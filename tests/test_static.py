"""The code base stays ``ruff`` and ``mypy --strict`` clean (configuration in pyproject.toml), checked by
the exact tool versions the test extra pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (the test extra provides it)")
    return [found]


def test_ruff_clean() -> None:
    proc = subprocess.run([*_tool("ruff"), "check", "daemon", "tests"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    proc = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


GATE_PACKAGES = ("mypy", "ruff", "types-PyYAML", "types-jsonschema")


def test_gate_tools_are_pinned_and_installed_at_the_pin() -> None:
    from importlib import metadata

    pyproject = (REPO / "pyproject.toml").read_text()
    for package in GATE_PACKAGES:
        pins = re.findall(rf'"{re.escape(package)}==([^"]+)"', pyproject)
        assert len(pins) == 1, f"{package}: the test extra must pin exactly one version, found {pins}"
        try:
            installed = metadata.version(package)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{package} is not installed (the test extra provides it)")
        assert installed == pins[0], f"{package} {installed} installed, the gate is pinned to {pins[0]}"
