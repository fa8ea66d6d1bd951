"""Disk used by facegate and by the runtime packages it pulls in (``facegate doctor`` prints it).

Sizes are disk usage as ``du`` counts it (allocated blocks, each inode once). facegate's share is its
package directory plus the bundled models (the repository's ``models/`` in a source checkout). The
runtime is facegate's requirements without extras, followed transitively, each measured from the file
list pip recorded for it; a requirement satisfied outside pip (Debian's ``python3-opencv`` for
OpenCV) is measured from its import location, without the shared libraries it links.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
#: distributions whose import name differs from the distribution name, for installs without metadata
_IMPORT_NAMES = {"opencv-python-headless": "cv2", "opencv-python": "cv2", "pyyaml": "yaml", "paho-mqtt": "paho",
                 "ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}


@dataclass(frozen=True, slots=True)
class PackageSize:
    name: str
    version: str
    bytes: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Footprint:
    facegate: PackageSize
    models_bytes: int
    dependencies: tuple[PackageSize, ...]

    @property
    def total_bytes(self) -> int:
        return self.facegate.bytes + sum(d.bytes for d in self.dependencies)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def disk_usage(paths: Iterable[Path]) -> int:
    """Bytes allocated to the files under ``paths`` (files or directories), each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in paths:
        candidates = [path] if not path.is_dir() else [path, *path.rglob("*")]
        for item in candidates:
            try:
                st = item.lstat()
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total


def _requirements(dist: metadata.Distribution) -> list[str]:
    names = []
    for spec in dist.requires or []:
        requirement, _, marker = spec.partition(";")
        if "extra" in marker:
            continue
        match = _NAME.match(requirement)
        if match:
            names.append(normalise(match.group(1)))
    return names


def _distribution(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _import_location(name: str) -> Path | None:
    spec = importlib.util.find_spec(_IMPORT_NAMES.get(name, name.replace("-", "_")))
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _measure(name: str) -> tuple[PackageSize | None, list[str]]:
    dist = _distribution(name)
    if dist is None:
        where = _import_location(name)
        if where is None:
            return None, []  # not installed: e.g. a marker that excludes this platform
        return PackageSize(name, "?", disk_usage([where]), f"not installed by pip: {where}"), []
    label = dist.metadata["Name"] or name
    if dist.files is None:  # metadata without a file list (Debian's python3-numpy, for one)
        where = _import_location(name)
        size = disk_usage([where]) if where is not None else 0
        return PackageSize(label, dist.version, size, f"no file list; measured at {where}"), _requirements(dist)
    files = [Path(str(dist.locate_file(f))) for f in dist.files]
    return PackageSize(label, dist.version, disk_usage(files)), _requirements(dist)


def facegate_size() -> tuple[PackageSize, int]:
    """facegate's own disk usage (package and bundled models) and the models' part of it."""
    import facegate
    from facegate.inference.manifest import bundled_models_dir

    package = Path(facegate.__file__).resolve().parent
    models = bundled_models_dir()
    models_bytes = disk_usage([models])
    inside = models.is_relative_to(package)
    total = disk_usage([package]) + (0 if inside else models_bytes)
    dist = _distribution("facegate")
    version = dist.version if dist is not None else "source"
    note = "" if inside else f"source checkout, models in {models}"
    return PackageSize("facegate", version, total, note), models_bytes


def measure() -> Footprint:
    """facegate and its runtime dependency closure, largest dependency first."""
    own, models_bytes = facegate_size()
    dist = _distribution("facegate")
    pending = _requirements(dist) if dist is not None else []
    done: set[str] = {"facegate"}
    found: list[PackageSize] = []
    while pending:
        name = pending.pop()
        if name in done:
            continue
        done.add(name)
        size, requires = _measure(name)
        if size is not None:
            found.append(size)
        pending += requires
    found.sort(key=lambda p: -p.bytes)
    return Footprint(own, models_bytes, tuple(found))


__all__ = ["Footprint", "PackageSize", "disk_usage", "facegate_size", "measure", "normalise"]
