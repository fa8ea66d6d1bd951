"""Where the daemon's memory goes, stage by stage: ``facegate bench --pipeline`` runs this in a child.

A fresh interpreter imports what ``facegate run`` imports, one layer at a time, then builds the models and
runs frames of a replay through the daemon's pipeline; after each stage it records ``VmRSS``, ``RssAnon``
and ``RssFile`` from ``/proc/self/status``. The deltas say what each layer costs (imports of libraries
that the next layer would import anyway are counted where they first happen). Linux only.

Run by hand: ``python -m facegate.bench.memory_stages [VIDEO]`` prints one JSON object per stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class MemoryStage:
    stage: str
    rss_mb: float
    anon_mb: float
    file_mb: float


#: frames of the replay run through the pipeline (the short Hamilton clip has 275)
FRAMES = 275


def _read(capture: Any) -> Any:
    """The next frame at the benchmark size, ``None`` at the end."""
    import cv2
    import numpy as np

    from facegate.bench.service import BENCH_SIZE

    ok, image = capture.read()
    if not ok:
        return None
    if (image.shape[1], image.shape[0]) != BENCH_SIZE:
        image = cv2.resize(image, BENCH_SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image, dtype=np.uint8)


def _status() -> tuple[float, float, float]:
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            values[key] = int(value.split()[0]) / 1024.0
    return values.get("VmRSS", float("nan")), values.get("RssAnon", float("nan")), values.get("RssFile", float("nan"))


def _stages(video: str | None) -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    """``(name, step)`` in order; each step keeps what it built in the shared dict (it stays resident)."""

    def imports(*modules: str) -> Callable[[dict[str, Any]], None]:
        def step(_state: dict[str, Any]) -> None:
            import importlib

            for module in modules:
                importlib.import_module(module)

        return step

    def config(state: dict[str, Any]) -> None:
        from facegate.config.models import FacegateConfig

        state["config"] = FacegateConfig.model_validate({"cameras": [], "mqtt": {"enabled": False}})

    def detector(state: dict[str, Any]) -> None:
        from facegate.detectors.registry import create_detector

        cfg = state["config"]
        # the validated ``detector:`` section is the detector's typed options, as FaceEngine builds it
        state["detector"] = create_detector(cfg.detector, num_threads=cfg.detector.num_threads)

    def embedder(state: dict[str, Any]) -> None:
        from facegate.embedders.registry import build_embedder

        cfg = state["config"]
        state["embedder"] = build_embedder(cfg.recognition.model_name, variant=cfg.recognition.variant)

    def aligner(state: dict[str, Any]) -> None:
        from facegate.align import build_aligner

        state["aligner"] = build_aligner(state["embedder"].alignment)

    def open_video(state: dict[str, Any]) -> None:
        import cv2

        from facegate.bench.service import _frames
        from facegate.capture.replay import open_video_file

        if video:
            capture = open_video_file(video)  # as the daemon's replay opens it
            if not capture.isOpened():
                raise FileNotFoundError(video)
            state["fps"] = capture.get(cv2.CAP_PROP_FPS) or 25.0

            def rewind() -> Callable[[], Any]:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0.0)
                return lambda: _read(capture)
        else:
            images, fps = _frames(None)
            state["fps"] = fps

            def rewind() -> Callable[[], Any]:
                return iter(images).__next__
        state["rewind"] = rewind
        state["next"] = rewind()
        state["first"] = state["next"]()

    def run_frames(state: dict[str, Any], first: Any) -> None:
        from facegate.types import Frame

        pipeline, image, step = state["pipeline"], first, 1.0 / state["fps"]
        for _ in range(FRAMES):
            if image is None:
                break
            index = state.get("index", 0)
            state["index"] = index + 1
            pipeline.step(Frame(image=image, camera="bench", index=index, monotonic=index * step,
                                wall=1_700_000_000.0 + index * step))
            try:
                image = state["next"]()
            except StopIteration:
                image = None

    def frames(state: dict[str, Any]) -> None:
        import tempfile

        from facegate.gallery.store import SqliteGallery
        from facegate.matcher import Matcher
        from facegate.pipeline import Pipeline
        from facegate.service_build import gate_config, tracker_config, voting_config

        cfg, embedder = state["config"], state["embedder"]
        state["tmp"] = tmp = tempfile.TemporaryDirectory()  # kept for the next stage, cleaned up after it
        gallery = SqliteGallery(Path(tmp.name) / "gallery.sqlite3", model_id=embedder.model_id)
        state["gallery"] = gallery
        matcher = Matcher(gallery, embedder.model_id, metric="euclidean", threshold=embedder.thresholds)
        state["pipeline"] = Pipeline(state["detector"], state["aligner"], embedder, matcher,
                                     gates=gate_config(cfg), decision_config=voting_config(cfg),
                                     tracker_config=tracker_config(cfg))
        run_frames(state, state.pop("first"))

    def release(state: dict[str, Any]) -> None:
        from facegate.file_pages import release_file_pages
        from facegate.memory import release_free_memory

        release_free_memory()
        release_file_pages()  # as the daemon does 5 s after READY
        state["next"] = state["rewind"]()
        run_frames(state, state["next"]())
        state.pop("gallery").close()
        state.pop("tmp").cleanup()

    return [
        ("Python interpreter and this runner (facegate package, json, subprocess, ctypes)", imports()),
        ("numpy", imports("numpy")),
        ("OpenCV", imports("cv2")),
        ("LiteRT", imports("ai_edge_litert.interpreter")),
        ("PyYAML, pydantic", imports("yaml", "pydantic")),
        ("paho-mqtt (with ssl / OpenSSL)", imports("paho.mqtt.client")),
        ("configuration models (pydantic)", imports("facegate.config.models")),
        ("service, events, remote and CLI modules", imports("facegate.service", "facegate.cli")),
        ("default configuration validated", config),
        ("detector model (interpreter, XNNPACK)", detector),
        ("embedder model (interpreter, XNNPACK packed weights)", embedder),
        ("landmarks (5-point forest)", aligner),
        ("replay opened, first frame decoded (ffmpeg)" if video
         else "replay: the synthetic demo frames generated (held in memory)", open_video),
        (f"up to {FRAMES} frames decoded and through the pipeline", frames),
        ("clean file pages unmapped (facegate.file_pages), then the frames again", release),
    ]


def run_stages(video: str | None) -> None:
    """Execute the stages in this process, printing one JSON line per stage (the child's side)."""
    from facegate.memory import tune_allocator

    tune_allocator()  # as ``facegate run`` does first
    state: dict[str, Any] = {}
    for name, step in _stages(video):
        step(state)
        rss, anon, file = _status()
        sys.stdout.write(json.dumps({"stage": name, "rss": rss, "anon": anon, "file": file}) + "\n")
        sys.stdout.flush()


def memory_stages(video: str | None = None) -> list[MemoryStage]:
    """The stages measured in a fresh child interpreter (empty when the child fails)."""
    args = [sys.executable, "-m", "facegate.bench.memory_stages", *([video] if video else [])]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    rows = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            rows.append(MemoryStage(item["stage"], item["rss"], item["anon"], item["file"]))
    return rows


if __name__ == "__main__":
    run_stages(sys.argv[1] if len(sys.argv) > 1 else None)


__all__ = ["MemoryStage", "memory_stages", "run_stages"]
