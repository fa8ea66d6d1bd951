"""Shared pytest fixtures. Fixture modules live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facegate.engine import FaceEngine, get_engine
from facegate.errors import ModelNotInstalledError
from facegate.types import ImageBGR

pytest_plugins: list[str] = ["tests.fixtures.isolation", "tests.fixtures.mosquitto", "tests.fixtures.real_faces"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "daemon" / "facegate" / "samples"


def shared_data_dir() -> Path:
    """``../shared/data`` next to the checkout (CI and developer machines), or $FACEGATE_SHARED_DATA."""
    env = os.environ.get("FACEGATE_SHARED_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def tensorflow_or_skip() -> Any:
    """TensorFlow imported as the converter imports it (oneDNN off: facegate.convert.tf_import), or a skip.

    Tests never ``import tensorflow`` themselves: an import before the converter's switch would bring the
    oneDNN kernels that segfault on AVX-512 BF16 CPUs back into the converter checks.
    """
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the convert extra (TensorFlow)")
    from facegate.convert.tf_import import import_tensorflow

    return import_tensorflow("this test")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "pairs.csv").is_file():
        pytest.skip(f"internal evaluation data not present at {path} (see ../shared/README.md)")
    return path


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES_DIR


@pytest.fixture(scope="session")
def astronaut_bgr() -> ImageBGR:
    skimage_data = pytest.importorskip("skimage.data")
    rgb = skimage_data.astronaut()
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="session")
def coffee_bgr() -> ImageBGR:
    skimage_data = pytest.importorskip("skimage.data")
    rgb = skimage_data.coffee()
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    """The default face engine (detector, aligner, embedder); the test is skipped without its models."""
    try:
        return get_engine()
    except ModelNotInstalledError as err:
        pytest.skip(f"face models not installed: {err}")
