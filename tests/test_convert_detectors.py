"""Converted detectors against their original implementations (convert extra; references skipped
when absent).

* MTCNN: each TFLite net against PyTorch running facenet-pytorch's state dicts (max abs error 2e-5);
  the whole cascade against facenet-pytorch's own ``MTCNN.detect`` (same face counts, >= 90% of
  boxes with IoU >= 0.99, all >= 0.8, landmarks within 1% of the face width) and against the ``mtcnn``
  package (same original weights, its own resizing and NMS: faces of 40 px or more matched with IoU
  >= 0.75, eyes within 6% of the box width).
* dlib MMOD: the bundled fp32 model reproduces ``dlib.cnn_face_detection_model_v1`` exactly
  (IoU 1, confidences within 1e-3); int8 finds the same faces, sometimes at a neighbouring pyramid
  level or window (IoU >= 0.5, confidence within 0.3).
* the torch-free ``.pt`` reader against ``torch.load``; the shipped Haar files against OpenCV's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.detectors.registry import build_detector
from facegate.images import load_image
from facegate.types import Box, ImageBGR
from tests.conftest import tensorflow_or_skip

pytestmark = pytest.mark.convert

SAMPLES = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
SHARED = ("deepface_couple.jpg", "fnp_multiface.jpg", "fr_two_people.jpg", "dlib_2008_001322.jpg")


def _halved(image: ImageBGR) -> ImageBGR:
    if max(image.shape[:2]) <= 800:
        return image
    return np.ascontiguousarray(cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2),
                                           interpolation=cv2.INTER_AREA))


def _images(samples_dir: Path, astronaut_bgr: ImageBGR, shared: bool) -> list[tuple[str, ImageBGR]]:
    from tests.conftest import shared_data_dir

    out = [("astronaut", astronaut_bgr)] + [(n, _halved(load_image(samples_dir / n))) for n in SAMPLES]
    folder = shared_data_dir() / "detection"
    if shared and folder.is_dir():
        out += [(n, _halved(load_image(folder / n))) for n in SHARED]
    return out


# -- MTCNN ------------------------------------------------------------------------------------------


def _torch_forward(torch: Any, state: dict[str, Any], net: str, x: Any) -> dict[str, Any]:
    """facenet-pytorch's PNet/RNet/ONet forward written with torch.nn.functional (NCHW, normalised)."""
    f = torch.nn.functional

    def conv(v: Any, name: str) -> Any:
        return f.conv2d(v, state[f"{name}.weight"], state[f"{name}.bias"])

    def prelu(v: Any, name: str) -> Any:
        return f.prelu(v, state[f"{name}.weight"])

    def pool(v: Any, k: int, s: int) -> Any:
        return f.max_pool2d(v, k, s, ceil_mode=True)

    def dense(v: Any, name: str) -> Any:
        return f.linear(v, state[f"{name}.weight"], state[f"{name}.bias"])

    def flat(v: Any) -> Any:
        return v.permute(0, 3, 2, 1).contiguous().view(v.shape[0], -1)

    if net == "pnet":
        v = pool(prelu(conv(x, "conv1"), "prelu1"), 2, 2)
        v = prelu(conv(prelu(conv(v, "conv2"), "prelu2"), "conv3"), "prelu3")
        return {"scores": f.softmax(conv(v, "conv4_1"), dim=1)[:, 1:2], "regressors": conv(v, "conv4_2")}
    v = pool(prelu(conv(x, "conv1"), "prelu1"), 3, 2)
    v = pool(prelu(conv(v, "conv2"), "prelu2"), 3, 2)
    if net == "rnet":
        v = prelu(dense(flat(prelu(conv(v, "conv3"), "prelu3")), "dense4"), "prelu4")
        return {"scores": f.softmax(dense(v, "dense5_1"), dim=1)[:, 1:2], "regressors": dense(v, "dense5_2")}
    v = pool(prelu(conv(v, "conv3"), "prelu3"), 2, 2)
    v = prelu(dense(flat(prelu(conv(v, "conv4"), "prelu4")), "dense5"), "prelu5")
    return {"scores": f.softmax(dense(v, "dense6_1"), dim=1)[:, 1:2], "regressors": dense(v, "dense6_2"),
            "landmarks": dense(v, "dense6_3")}


def test_pt_reader_equals_torch_load() -> None:
    torch = pytest.importorskip("torch")
    from facegate.convert.mtcnn import SOURCES
    from facegate.convert.sources import fetch
    from facegate.convert.torch_state import load_state_dict

    for source, sha in SOURCES.values():
        path = fetch(source, sha256=sha)
        ours = load_state_dict(path)
        theirs = torch.load(str(path), map_location="cpu", weights_only=True)
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            np.testing.assert_array_equal(ours[key], value.numpy())


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_bundled_mtcnn_nets_match_pytorch(net: str, astronaut_bgr: ImageBGR) -> None:
    torch = pytest.importorskip("torch")
    from facegate.convert.mtcnn import load_weights
    from facegate.inference.manifest import default_zoo, verify_file
    from facegate.inference.tflite import TfliteModel

    manifest = default_zoo().get(f"mtcnn_{net}_fp32")
    model = TfliteModel(verify_file(manifest), num_threads=1)
    rgb = astronaut_bgr[:, :, ::-1].astype(np.float32)
    if net == "pnet":
        batch = cv2.resize(rgb, (183, 161), interpolation=cv2.INTER_AREA)[None]
        model.resize_input(batch.shape)
    else:
        size = 24 if net == "rnet" else 48
        boxes = [(180, 70, 95), (160, 50, 140), (10, 300, 120), (300, 300, 60)]
        batch = np.stack([cv2.resize(rgb[y : y + s, x : x + s], (size, size), interpolation=cv2.INTER_AREA)
                          for x, y, s in boxes])
    outs = model.run([batch])
    got = {o.role: outs[model.output_index(o.tensor)] for o in manifest.outputs}
    state = {k: torch.from_numpy(v) for k, v in load_weights(net).items()}
    x = torch.from_numpy(((batch - 127.5) * 0.0078125).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        want = _torch_forward(torch, state, net, x)
    for role, value in want.items():
        ref = value.numpy()
        if ref.ndim == 4:
            ref = ref.transpose(0, 2, 3, 1)
        assert got[role].shape == ref.shape
        np.testing.assert_allclose(got[role], ref, atol=2e-5, rtol=0)


def _facenet_pytorch_mtcnn(torch: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """facenet-pytorch's own ``MTCNN`` (the weights' source and the cascade we follow).

    Its ``detect_face`` imports torchvision only for ``batched_nms`` (and ``to_tensor`` for cropping,
    unused here); PyPI's torchvision does not load beside the CPU torch wheel, so the test provides
    ``batched_nms`` -- torchvision's documented semantics: greedy IoU NMS per index, kept indices by
    decreasing score -- in a stand-in module.
    """
    import sys
    import types

    def batched_nms(boxes: Any, scores: Any, idxs: Any, threshold: float) -> Any:
        keep: list[int] = []
        order = torch.argsort(scores, descending=True)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        alive = torch.ones(len(order), dtype=torch.bool)
        for rank, i in enumerate(order.tolist()):
            if not alive[rank]:
                continue
            keep.append(i)
            rest = order[rank + 1 :]
            lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
            rb = torch.minimum(boxes[i, 2:4], boxes[rest, 2:4])
            inter = (rb - lt).clamp(min=0).prod(dim=1)
            iou = inter / (area[i] + area[rest] - inter)
            alive[rank + 1 :] &= ~((iou > threshold) & (idxs[rest] == idxs[i]))
        return torch.as_tensor(keep, dtype=torch.long)

    root = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes_mod = types.ModuleType("torchvision.ops.boxes")
    boxes_mod.batched_nms = batched_nms  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    for name, module in (("torchvision", root), ("torchvision.ops", ops), ("torchvision.ops.boxes", boxes_mod),
                         ("torchvision.transforms", transforms),
                         ("torchvision.transforms.functional", functional)):
        monkeypatch.setitem(sys.modules, name, module)
    for name in [m for m in sys.modules if m.startswith("facenet_pytorch")]:
        monkeypatch.delitem(sys.modules, name)
    from facenet_pytorch.models.mtcnn import MTCNN  # type: ignore[import-not-found]

    return MTCNN(keep_all=True)


def test_mtcnn_cascade_matches_facenet_pytorch(samples_dir: Path, astronaut_bgr: ImageBGR,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    reference = _facenet_pytorch_mtcnn(torch, monkeypatch)
    ours = build_detector("mtcnn")
    ious: list[float] = []
    landmark_errors: list[float] = []
    for label, image in _images(samples_dir, astronaut_bgr, shared=True):
        with torch.no_grad():
            boxes, _probs, points = reference.detect(np.ascontiguousarray(image[:, :, ::-1]), landmarks=True)
        got = ours.detect(image)
        assert len(got) == (0 if boxes is None else len(boxes)), label
        for box, pts in zip(boxes if boxes is not None else [], points if points is not None else [], strict=True):
            ref_box = Box(*(float(v) for v in box))
            best = max(got, key=lambda d: d.box.iou(ref_box))
            ious.append(best.box.iou(ref_box))
            if ious[-1] >= 0.99:
                landmark_errors.append(float(np.abs(best.landmarks - pts).max()) / ref_box.width)
    # same pyramid (PyTorch "area" resizing reproduced), same nets: boxes agree to float rounding,
    # except where two candidates nearly tie in an NMS and the other one wins (one face of 18 here)
    assert len(ious) >= 15
    assert min(ious) >= 0.8
    assert np.mean(np.asarray(ious) >= 0.99) >= 0.9
    assert max(landmark_errors) <= 0.01  # landmarks within 1% of the face width


@pytest.mark.slow
def test_mtcnn_cascade_matches_the_mtcnn_package(samples_dir: Path, astronaut_bgr: ImageBGR) -> None:
    tensorflow_or_skip()
    reference = pytest.importorskip("mtcnn")
    theirs = reference.MTCNN()
    ours = build_detector("mtcnn")
    compared = 0
    for label, image in _images(samples_dir, astronaut_bgr, shared=True):
        ref = [f for f in theirs.detect_faces(np.ascontiguousarray(image[:, :, ::-1]), threshold_onet=0.7)
               if min(f["box"][2:]) >= 40]
        got = ours.detect(image)
        for face in ref:
            x, y, w, h = face["box"]
            box = Box(float(x), float(y), float(x + w), float(y + h))
            best = max(got, key=lambda d: d.box.iou(box))
            assert best.box.iou(box) >= 0.75, (label, box, best.box)
            # the mtcnn package names eyes by image side: its "left_eye" is the person's right eye
            for mine, theirs_name in (("right_eye", "left_eye"), ("left_eye", "right_eye")):
                px, py = best.point(mine) or (np.nan, np.nan)
                tx, ty = face["keypoints"][theirs_name]
                assert np.hypot(px - tx, py - ty) <= 0.06 * w, (label, mine)
            compared += 1
    assert compared >= 5


# -- dlib MMOD ------------------------------------------------------------------------------------


def _dlib_faces(image: ImageBGR) -> list[tuple[Box, float]]:
    dlib = pytest.importorskip("dlib")
    from facegate.convert.mmod import SOURCE, SOURCE_SHA256
    from facegate.convert.sources import fetch

    model = _DLIB.get("mmod")
    if model is None:
        model = dlib.cnn_face_detection_model_v1(str(fetch(SOURCE, sha256=SOURCE_SHA256)))
        _DLIB["mmod"] = model
    out = []
    for d in model(np.ascontiguousarray(image[:, :, ::-1]), 0):
        r = d.rect
        out.append((Box(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1)),
                    float(d.confidence)))
    return out


_DLIB: dict[str, Any] = {}
_DLIB_RESULTS: dict[str, list[tuple[Box, float]]] = {}


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "min_iou", "max_score_diff"), [("fp32", 0.999, 1e-3), ("int8", 0.5, 0.3)])
def test_mmod_matches_dlib(variant: str, min_iou: float, max_score_diff: float, samples_dir: Path,
                           astronaut_bgr: ImageBGR) -> None:
    ours = build_detector("dlib", variant=variant, score_threshold=0.5)
    total = 0
    for label, image in _images(samples_dir, astronaut_bgr, shared=True):
        # dlib's own detector is the slow part (seconds per image): run it once for both variants
        ref = _DLIB_RESULTS.get(label)
        if ref is None:
            ref = _DLIB_RESULTS[label] = _dlib_faces(image)
        got = ours.detect(image)
        assert len(got) == len(ref), (label, [b for b, _ in ref], [g.box for g in got])
        for box, confidence in ref:
            best = max(got, key=lambda d: d.box.iou(box))
            assert best.box.iou(box) >= min_iou, (label, box, best.box)
            raw = float(np.log(best.score / (1.0 - best.score)))
            assert abs(raw - confidence) <= max_score_diff, (label, raw, confidence)
            total += 1
    assert total >= 5


# -- Haar -------------------------------------------------------------------------------------------


def test_shipped_cascades_are_opencvs_files() -> None:
    from facegate.convert.haar import EYES, EYES_SHA256, FACE, FACE_SHA256
    from facegate.convert.sources import fetch
    from facegate.inference.manifest import default_zoo, sha256_file

    zoo = default_zoo()
    for name, source, sha in (("haar_frontalface_default", FACE, FACE_SHA256), ("haar_eye", EYES, EYES_SHA256)):
        manifest = zoo.get(name)
        assert manifest.sha256 == sha == sha256_file(fetch(source, sha256=sha))
        assert manifest.source.sha256 == sha
