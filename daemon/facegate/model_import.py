"""``facegate models import FILE --as NAME``: install a model file the user has the right to use.

facegate ships no weights for the other DeepFace names (detectors ``ssd``, ``retinaface``, ``yunet``;
embedders ``VGG-Face``, ``Facenet``, ``Facenet512``, ``OpenFace``, ``DeepFace``, ``ArcFace``, ``SFace``,
``GhostFaceNet``) and never downloads any: every shipped file is built from a pinned pip package
(:data:`NOT_SHIPPED` says why for the names whose licences were checked). A user who has
such a model as ``.tflite`` (run by LiteRT) or ``.onnx`` (run by OpenCV's DNN module) imports it
here: the file's tensor shapes are checked against the known spec of the name (:data:`EMBEDDER_SPECS`,
:data:`DETECTOR_SPECS`), the file is copied into :func:`~facegate.inference.manifest.user_models_dir`
and a manifest is written next to it, so that ``model_name="ArcFace"`` (or
``detector_backend="yunet"``) builds it from then on.

The specs state what facegate assumes about such a file -- input size, channel order and
normalisation (DeepFace's conventions for DeepFace-derived files, the original project's for the
others), the alignment template, the embedding size -- and DeepFace's published distance thresholds
(``deepface.modules.verification.find_threshold``) as the defaults. Import options override the
channel order and normalisation for files exported differently.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facegate.errors import ConfigError, ModelError
from facegate.inference.manifest import ModelManifest, default_zoo, load_manifest, sha256_file, user_models_dir

logger = logging.getLogger(__name__)

Colour = Literal["RGB", "BGR"]

#: InsightFace's 112x112 five-point template (arcface_torch ``norm_crop``), normalised by 112, in the
#: subject's perspective: the person's right eye is the point at the smaller x
ARCFACE_TEMPLATE: tuple[tuple[float, float], ...] = (
    (38.2946 / 112, 51.6963 / 112),
    (73.5318 / 112, 51.5014 / 112),
    (56.0252 / 112, 71.7366 / 112),
    (41.5493 / 112, 92.3655 / 112),
    (70.7299 / 112, 92.2041 / 112),
)
ARCFACE_POINTS: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


#: Why a model is not shipped, for the names whose licences were checked (opencv/opencv_zoo's
#: models/face_detection_yunet/README.md: "All files in this directory are licensed under MIT License";
#: models/face_recognition_sface/README.md: "... under Apache 2.0 License"). Both licences allow
#: redistribution; what is missing is a source facegate may build from: its models are produced only from
#: pinned pip packages, and no package available here carries the ONNX files (alchemyface 1.2.0,
#: detekface 0.1.0 and moca-face-matcher 0.2.2 fetch them from GitHub at run time, which facegate never does).
NOT_SHIPPED: dict[str, str] = {
    "yunet": "YuNet (OpenCV Zoo, MIT licence) may be redistributed, but no pip package available offline "
             "carries its ONNX file (facegate builds its models only from pinned pip packages and never "
             "downloads weights)",
    "sface": "SFace (OpenCV Zoo, Apache-2.0 licence) may be redistributed, but no pip package available "
             "offline carries its ONNX file (facegate builds its models only from pinned pip packages and never "
             "downloads weights)",
}


def not_shipped_reason(name: str) -> str:
    """Why facegate ships no model of this DeepFace name, in words that are true for it."""
    return NOT_SHIPPED.get(name.casefold(), f"facegate ships no {name} model and never downloads weights")


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """What an embedder file of one DeepFace name must look like and how it is fed."""

    name: str
    size: int
    dims: tuple[int, ...]
    thresholds: Mapping[str, float]
    colour: Colour = "BGR"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    template: tuple[tuple[float, float], ...] = ARCFACE_TEMPLATE
    points: tuple[str, ...] = ARCFACE_POINTS
    notes: str = ""


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """What a detector file of one DeepFace name must look like; decoding lives in
    :mod:`facegate.detectors.onnx_dnn`."""

    name: str
    formats: tuple[str, ...]
    input_size: tuple[int, int] | None  # (width, height); None = the file's own
    colour: Colour
    mean: tuple[float, ...]
    std: tuple[float, ...]
    decoder: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""


_DEEPFACE_INPUT = ("DeepFace's convention: a BGR chip scaled to [0, 1] (normalization='base'); override with "
                   "--colour/--mean/--std for files exported with another")

#: DeepFace's ``find_threshold`` values (deepface 0.0.9x ``modules/verification.py``)
EMBEDDER_SPECS: dict[str, EmbedderSpec] = {
    spec.name.casefold(): spec
    for spec in (
        EmbedderSpec("VGG-Face", 224, (4096, 2622),
                     {"cosine": 0.68, "euclidean": 1.17, "euclidean_l2": 1.17, "angular": 0.39},
                     notes="4096-d (DeepFace's fc7 output) or 2622-d (the original classifier); " + _DEEPFACE_INPUT),
        EmbedderSpec("Facenet", 160, (128,),
                     {"cosine": 0.40, "euclidean": 10.0, "euclidean_l2": 0.80, "angular": 0.33},
                     notes=_DEEPFACE_INPUT),
        EmbedderSpec("Facenet512", 160, (512,),
                     {"cosine": 0.30, "euclidean": 23.56, "euclidean_l2": 1.04, "angular": 0.35},
                     notes=_DEEPFACE_INPUT),
        EmbedderSpec("OpenFace", 96, (128,),
                     {"cosine": 0.10, "euclidean": 0.55, "euclidean_l2": 0.55, "angular": 0.11},
                     notes=_DEEPFACE_INPUT),
        EmbedderSpec("DeepFace", 152, (4096,),
                     {"cosine": 0.23, "euclidean": 64.0, "euclidean_l2": 0.64, "angular": 0.12},
                     notes=_DEEPFACE_INPUT),
        EmbedderSpec("ArcFace", 112, (512,),
                     {"cosine": 0.68, "euclidean": 4.15, "euclidean_l2": 1.13, "angular": 0.39},
                     notes=_DEEPFACE_INPUT),
        EmbedderSpec("SFace", 112, (128,),
                     {"cosine": 0.593, "euclidean": 10.734, "euclidean_l2": 1.055, "angular": 0.36},
                     colour="RGB", mean=(0.0,), std=(1.0,),
                     notes="OpenCV Zoo's face_recognition_sface (what DeepFace runs): RGB 0..255, NCHW"),
        EmbedderSpec("GhostFaceNet", 112, (512,),
                     {"cosine": 0.65, "euclidean": 35.71, "euclidean_l2": 1.10, "angular": 0.38},
                     notes=_DEEPFACE_INPUT),
    )
}

DETECTOR_SPECS: dict[str, DetectorSpec] = {
    "ssd": DetectorSpec(
        "ssd", ("onnx", "tflite"), (300, 300), "BGR", (104.0, 177.0, 123.0), (1.0,),
        {"kind": "ssd", "min_score": 0.5, "eyes": "opencv_eyes"},
        notes="OpenCV's res10_300x300 SSD (DeepFace's 'ssd'): output (1, 1, N, 7) rows "
              "[image, class, score, x1, y1, x2, y2] in [0, 1]; eyes from the Haar eye cascade, as DeepFace does",
    ),
    "yunet": DetectorSpec(
        "yunet", ("onnx",), None, "BGR", (0.0,), (1.0,),
        {"kind": "yunet", "min_score": 0.9, "nms_iou": 0.3, "top_k": 5000},
        notes="OpenCV Zoo's YuNet, run by cv2.FaceDetectorYN: boxes, 5 landmarks and scores",
    ),
    "retinaface": DetectorSpec(
        "retinaface", ("onnx", "tflite"), None, "BGR", (104.0, 117.0, 123.0), (1.0,),
        {"kind": "retinaface", "min_score": 0.9, "nms_iou": 0.4, "steps": (8, 16, 32),
         "min_sizes": ((16, 32), (64, 128), (256, 512)), "variances": (0.1, 0.2)},
        notes="RetinaFace with a prior-box head (Pytorch_Retinaface export): outputs loc (1, N, 4), conf (1, N, 2), "
              "landmarks (1, N, 10); input BGR minus (104, 117, 123)",
    ),
}


@dataclass(frozen=True, slots=True)
class Probe:
    """What a model file turned out to be."""

    format: Literal["tflite", "onnx"]
    input_shape: tuple[int, ...]
    layout: Literal["NHWC", "NCHW"]
    output_shapes: tuple[tuple[int, ...], ...]
    output_names: tuple[str, ...]


def _format_of(path: Path) -> Literal["tflite", "onnx"]:
    suffix = path.suffix.casefold()
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    raise ConfigError(f"{path.name}: only .tflite and .onnx files can be imported")


def probe_tflite(path: Path) -> Probe:
    from facegate.inference.tflite import TfliteModel

    model = TfliteModel(path, num_threads=1)
    if len(model.inputs) != 1:
        raise ModelError(f"{path.name}: expected one input tensor, found {len(model.inputs)}")
    shape = model.inputs[0].shape
    layout: Literal["NHWC", "NCHW"] = "NCHW" if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3) \
        else "NHWC"
    return Probe("tflite", shape, layout, tuple(o.shape for o in model.outputs), tuple(o.name for o in model.outputs))


def probe_onnx(path: Path, size: int) -> Probe:
    """OpenCV's DNN module does not report input shapes, so the file is run on one zero
    ``(1, 3, size, size)`` blob: a file that cannot take that input fails here."""
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(np.zeros((1, 3, size, size), dtype=np.float32))
        names = tuple(net.getUnconnectedOutLayersNames())
        outs = net.forward(list(names))
    except cv2.error as err:
        raise ModelError(f"{path.name}: OpenCV's DNN module cannot run it on a (1, 3, {size}, {size}) input: "
                         f"{str(err).strip().splitlines()[-1]}") from err
    return Probe("onnx", (1, 3, size, size), "NCHW", tuple(tuple(int(d) for d in o.shape) for o in outs), names)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_")


def _check_embedder(spec: EmbedderSpec, probe: Probe, path: Path) -> tuple[int, int | str]:
    """``(dim, output tensor)`` of a file that fits the spec, else a :class:`ModelError` naming the
    expected and the found shapes."""
    shape = probe.input_shape
    want_in = f"(1, {spec.size}, {spec.size}, 3) NHWC or (1, 3, {spec.size}, {spec.size}) NCHW"
    ok_in = len(shape) == 4 and (
        (probe.layout == "NHWC" and shape[1:] == (spec.size, spec.size, 3))
        or (probe.layout == "NCHW" and shape[1:] == (3, spec.size, spec.size))
    )
    if not ok_in:
        raise ModelError(f"{path.name} does not fit {spec.name}: input shape expected {want_in}, got {shape}")
    for i, out in enumerate(probe.output_shapes):
        flat = int(np.prod(out[1:])) if len(out) > 1 else 0
        if flat in spec.dims and all(d == 1 for d in out[1:-1]):
            return flat, i
    dims = " or ".join(str(d) for d in spec.dims)
    raise ModelError(f"{path.name} does not fit {spec.name}: output shape expected (1, {dims}), "
                     f"got {', '.join(str(o) for o in probe.output_shapes)}")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Overrides of the spec's input conventions (``None`` keeps the spec's)."""

    colour: Colour | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    force: bool = False
    dest: Path | None = None


def _target(dest: Path, stem: str, suffix: str, force: bool) -> tuple[Path, Path]:
    model = dest / f"{stem}.{suffix}"
    manifest = dest / f"{stem}.yaml"
    if (model.exists() or manifest.exists()) and not force:
        raise ConfigError(f"{manifest} already exists; pass --force to replace it")
    return model, manifest


def _source_fields(path: Path, digest: str) -> dict[str, Any]:
    return {"package": "user-supplied", "version": "-", "path": path.name, "sha256": digest,
            "licence": "LicenseRef-user-supplied",
            "notes": "imported with `facegate models import`; the user is responsible for its licence"}


def import_embedder(path: Path, spec: EmbedderSpec, options: ImportOptions) -> Path:
    from facegate.convert.manifest_writer import write_manifest

    fmt = _format_of(path)
    probe = probe_tflite(path) if fmt == "tflite" else probe_onnx(path, spec.size)
    dim, output = _check_embedder(spec, probe, path)
    dest = options.dest or user_models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"user_{_slug(spec.name)}_{fmt}"
    model_path, _ = _target(dest, stem, fmt, options.force)
    digest = sha256_file(path)
    tmp = model_path.with_suffix(model_path.suffix + ".tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(model_path)
    colour = options.colour or spec.colour
    mean = tuple(options.mean) if options.mean is not None else spec.mean
    std = tuple(options.std) if options.std is not None else spec.std
    fields: dict[str, Any] = {
        "name": stem,
        "kind": "embedder",
        "family": spec.name,
        "variant": fmt,
        "file": model_path.name,
        "format": fmt,
        "licence": "LicenseRef-user-supplied",
        "source": _source_fields(path, digest),
        "converter": {"tool": "facegate.model_import", "quantization": "none"},
        "input": {"width": spec.size, "height": spec.size, "channels": 3, "layout": probe.layout,
                  "dtype": "float32", "colour": colour,
                  "normalisation": {"mean": mean, "std": std, "in_graph": False}},
        "outputs": ({"role": "embedding", "tensor": output if fmt == "tflite" else probe.output_names[int(output)],
                     "shape": (1, dim)},),
        "alignment": {"size": spec.size, "padding": 0.0, "points": spec.points, "template": spec.template,
                      "method": "plain"},
        "embedding_dim": dim,
        "model_id": f"user_{_slug(spec.name)}_{digest[:12]}",
        "thresholds": dict(spec.thresholds),
        # marks the thresholds as DeepFace's, not fitted to this file (see facegate.model_calibration)
        "operating_point": {"thresholds": "deepface-defaults"},
        "default": True,
        "notes": spec.notes,
    }
    written = write_manifest(fields, model_path)
    default_zoo.cache_clear()
    logger.info("imported %s as %s into %s", path.name, spec.name, dest)
    logger.warning(
        "%s uses DeepFace's published %s thresholds (%s), tuned for DeepFace's own weights and preprocessing, "
        "not for this file; fit them with `facegate evaluate --calibrate IDENTITIES_DIR -m %s --write`",
        path.name, spec.name, ", ".join(f"{k} {v:g}" for k, v in spec.thresholds.items()), spec.name)
    return written


def import_detector(path: Path, spec: DetectorSpec, options: ImportOptions) -> Path:
    from facegate.convert.manifest_writer import write_manifest
    from facegate.detectors.onnx_dnn import check_detector_file

    fmt = _format_of(path)
    if fmt not in spec.formats:
        raise ModelError(f"{path.name}: a {spec.name} detector must be {' or '.join(spec.formats)}, got {fmt}")
    width, height, layout, outputs = check_detector_file(spec.name, path, spec.input_size)
    dest = options.dest or user_models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"user_{_slug(spec.name)}_{fmt}"
    model_path, _ = _target(dest, stem, fmt, options.force)
    digest = sha256_file(path)
    tmp = model_path.with_suffix(model_path.suffix + ".tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(model_path)
    fields: dict[str, Any] = {
        "name": stem,
        "kind": "detector",
        "family": spec.name,
        "variant": fmt,
        "file": model_path.name,
        "format": fmt,
        "licence": "LicenseRef-user-supplied",
        "source": _source_fields(path, digest),
        "converter": {"tool": "facegate.model_import", "quantization": "none"},
        "input": {"width": width, "height": height, "channels": 3, "layout": layout, "dtype": "float32",
                  "colour": options.colour or spec.colour,
                  "normalisation": {"mean": tuple(options.mean) if options.mean is not None else spec.mean,
                                    "std": tuple(options.std) if options.std is not None else spec.std,
                                    "in_graph": False}},
        "outputs": tuple({"role": role, "tensor": name} for role, name in outputs),
        "decoder": dict(spec.decoder),
        "default": True,
        "notes": spec.notes,
    }
    written = write_manifest(fields, model_path)
    default_zoo.cache_clear()
    logger.info("imported %s as detector %s into %s", path.name, spec.name, dest)
    return written


def known_names() -> list[str]:
    return [s.name for s in EMBEDDER_SPECS.values()] + list(DETECTOR_SPECS)


def import_model(path: Path, name: str, options: ImportOptions | None = None) -> ModelManifest:
    """Check ``path`` against the spec of ``name`` and install it; returns the written manifest.

    Raises :class:`ConfigError` for an unknown name, an unsupported file type or an existing model
    (without ``force``) and :class:`ModelError` when the file's shapes do not fit the name.
    """
    options = options or ImportOptions()
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    key = name.casefold()
    if key in EMBEDDER_SPECS:
        written = import_embedder(path, EMBEDDER_SPECS[key], options)
    elif key in DETECTOR_SPECS:
        written = import_detector(path, DETECTOR_SPECS[key], options)
    else:
        raise ConfigError(f"cannot import a model as {name!r}; importable names: {', '.join(known_names())}")
    return load_manifest(written)


__all__ = [
    "ARCFACE_POINTS",
    "ARCFACE_TEMPLATE",
    "DETECTOR_SPECS",
    "EMBEDDER_SPECS",
    "NOT_SHIPPED",
    "DetectorSpec",
    "EmbedderSpec",
    "ImportOptions",
    "Probe",
    "import_model",
    "known_names",
    "not_shipped_reason",
    "probe_onnx",
    "probe_tflite",
]
