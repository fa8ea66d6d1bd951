"""``facegate bench --pipeline [VIDEO]``: the daemon's throughput, latency, memory and cold start.

* frames/s and per-frame latency p50/p99 of the full pipeline (detect, landmarks, align, embed, match,
  track, vote) on a replay at 640x360, with 1 and 2 inference threads, in process;
* cold start to READY: a real ``facegate run`` process with ``NOTIFY_SOCKET`` pointing at a socket of
  ours, timed from ``exec`` to ``READY=1`` (imports, config, models, gallery, spool, capture);
* peak RSS (``VmHWM``) and steady-state RSS (median ``VmRSS`` once warmed up) of that daemon process
  replaying the same video, split into private and file-backed pages and, from ``/proc/PID/smaps``,
  into what holds them (malloc heap, anonymous mappings, each library, models);
* resident memory stage by stage (imports, models, replay) in a fresh child process
  (:mod:`facegate.bench.memory_stages`);
* peak RSS of ``facegate demo --broker none`` (a child process reporting its own ``VmHWM``).

The default replay is the synthetic demo sequence (public-domain photos, one face per frame); pass a
video (e.g. ``../shared/data/video/short_hamilton_clip.mp4``) for real footage.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegate.bench.pipeline import bench_pipeline, replay_frames
from facegate.bench.timing import child_peak_rss_mb
from facegate.config.models import FacegateConfig
from facegate.engine import FaceEngine
from facegate.gallery.store import SqliteGallery
from facegate.matcher import Matcher
from facegate.pipeline import Pipeline
from facegate.service import gate_config, tracker_config, voting_config
from facegate.types import ImageBGR

BENCH_SIZE = (640, 360)


@dataclass(frozen=True, slots=True)
class ServiceBenchRow:
    figure: str
    threads: int
    value: float
    unit: str
    target: str


def _frames(video: str | None, limit: int = 300) -> tuple[list[ImageBGR], float]:
    if not video:
        from facegate.capture.synthetic import demo_frames

        seq = demo_frames(("obama2.jpg", "biden.jpg"), size=BENCH_SIZE)
        return list(seq.frames), seq.fps
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise FileNotFoundError(video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    images: list[ImageBGR] = []
    while len(images) < limit:
        ok, image = cap.read()
        if not ok:
            break
        if (image.shape[1], image.shape[0]) != BENCH_SIZE:
            image = cv2.resize(image, BENCH_SIZE, interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image, dtype=np.uint8))
    cap.release()
    return images, fps


def _enrolled_gallery(state: Path, engine: FaceEngine) -> SqliteGallery:
    from facegate.capture.synthetic import sample_path
    from facegate.enrollment import enroll_photos

    gallery = SqliteGallery(state / "gallery.sqlite3", model_id=engine.model_id)
    enroll_photos(gallery, engine, "barack_obama", "Barack Obama", [("obama.jpg", sample_path("obama.jpg"))])
    return gallery


def bench_throughput(video: str | None = None) -> list[ServiceBenchRow]:
    images, fps = _frames(video)
    frames = replay_frames(images, fps=fps)
    config = FacegateConfig()
    rows: list[ServiceBenchRow] = []
    with tempfile.TemporaryDirectory() as tmp:
        engines = {n: FaceEngine(num_threads=n) for n in (1, 2)}
        gallery = _enrolled_gallery(Path(tmp), engines[1])

        def make(threads: int) -> Pipeline:
            engine = engines[threads]
            matcher = Matcher(gallery, engine.model_id, metric="euclidean", threshold=engine.embedder.thresholds)
            return Pipeline(engine, engine.aligner, engine.embedder, matcher, gates=gate_config(config),
                            decision_config=voting_config(config), tracker_config=tracker_config(config))

        for row in bench_pipeline(make, frames, configs=((1, 1), (2, 1))):
            rows.append(ServiceBenchRow("frames/s 640x360", row.threads, round(row.fps, 1), "fps", ">= 60 (2 threads)"))
            rows.append(ServiceBenchRow("frame latency p50", row.threads, round(row.latency_p50_ms, 2), "ms", ""))
            rows.append(ServiceBenchRow("frame latency p99", row.threads, round(row.latency_p99_ms, 2), "ms",
                                        "<= 50"))
            stages = " ".join(f"{n}={ms:.1f}" for n, ms in row.stages)
            rows.append(ServiceBenchRow(f"stage p50 ms: {stages}", row.threads, float("nan"), "", ""))
        gallery.close()
    return rows


def _daemon_config(root: Path, video: str | None) -> Path:
    """A ``facegate run`` configuration replaying ``video`` (or the demo frames) in a loop, no broker."""
    if video:
        source = f"{{type: replay, path: {Path(video).resolve()}, loop: true}}"
    else:
        from facegate.capture.synthetic import demo_frames, write_image_folder

        frames = root / "frames"
        write_image_folder(demo_frames(("obama2.jpg", "biden.jpg"), size=BENCH_SIZE).frames, frames)
        source = f"{{type: replay, path: {frames}, fps: 10, loop: true}}"
    config = root / "facegate.yaml"
    config.write_text(
        f"state_dir: {root / 'state'}\n"
        f"cameras:\n  - id: bench\n    source: {source}\n"
        "mqtt: {host: 127.0.0.1, port: 9}\n"
    )
    return config


def bench_daemon_process(video: str | None = None, seconds: float = 20.0) -> list[ServiceBenchRow]:
    """Cold start to READY and resident memory of a real ``facegate run`` process (no broker: spooling).

    The daemon replays ``video`` (or the synthetic demo frames) in a loop at the file's frame rate.
    Steady state is the median ``VmRSS`` sampled once a second over the second half of ``seconds`` after
    READY (warm-up: the first faces, tracks and decoder buffers come in the first half).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = _daemon_config(root, video)
        sock_path = root / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(30.0)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "facegate", "run", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        ready_s = float("nan")
        samples: list[float] = []
        try:
            deadline = start + 60
            while time.perf_counter() < deadline:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                if b"READY=1" in data:
                    ready_s = time.perf_counter() - start
                    break
            for tick in range(max(2, round(seconds))):
                time.sleep(1.0)
                if tick >= seconds / 2:
                    samples.append(_memory_mb(proc.pid).get("VmRSS", float("nan")))
            memory = _memory_mb(proc.pid)
            breakdown = memory_breakdown(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            sock.close()
    replay = Path(video).name if video else "demo frames"
    steady = float(np.median(samples)) if samples else float("nan")
    return [
        ServiceBenchRow("cold start to READY", 1, round(ready_s, 2), "s", "<= 1.5"),
        ServiceBenchRow(f"peak RSS of the daemon on {replay} (VmHWM)", 1,
                        round(memory.get("VmHWM", float("nan")), 1), "MB", ""),
        ServiceBenchRow(f"steady RSS of the daemon on {replay} (median VmRSS, {seconds / 2:g}-{seconds:g} s "
                        "after READY)", 1, round(steady, 1), "MB", "<= 100"),
        ServiceBenchRow("  of which private (RssAnon)", 1, round(memory.get("RssAnon", float("nan")), 1), "MB", ""),
        ServiceBenchRow("  of which file-backed (RssFile: libraries, models)", 1,
                        round(memory.get("RssFile", float("nan")), 1), "MB", ""),
        *[ServiceBenchRow(f"    {name}", 1, mb, "MB", "") for name, mb in breakdown],
    ]


def _memory_mb(pid: int) -> dict[str, float]:
    """``VmHWM``, ``VmRSS``, ``RssAnon`` and ``RssFile`` of a process in MB (Linux ``/proc``)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


#: ``/proc/PID/smaps`` mappings grouped by what holds them (first matching substring wins)
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("private: [heap] (malloc: Python objects over 512 B, code, LiteRT/XNNPACK weights and tensors)", ("[heap]",)),
    ("private: anonymous mappings (Python's 1 MB object arenas, large numpy arrays and frames, "
     "thread arenas and stacks)", ("[anon]", "[stack")),
    ("file: OpenCV and its bundled libraries (ffmpeg, OpenBLAS, ...)", ("/cv2/", "opencv_python")),
    ("file: LiteRT / TFLite runtime", ("ai_edge_litert", "tflite_runtime")),
    ("file: models (.tflite, .npz)", (".tflite", ".npz", ".onnx")),
    ("file: numpy (and its OpenBLAS)", ("/numpy",)),
    ("file: libpython and extension modules", ("libpython", "lib-dynload")),
    ("file: pydantic_core", ("pydantic_core",)),
    ("file: OpenSSL (paho's TLS)", ("libcrypto", "libssl")),
)


def memory_breakdown(pid: int) -> list[tuple[str, float]]:
    """Resident MB per group of mappings (and "other"), largest first (Linux ``/proc/PID/smaps``)."""
    totals: dict[str, int] = {}
    current = "other"
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and ":" not in head[0]:  # a mapping header line
            path = head[5] if len(head) > 5 else "[anon]"
            current = next((name for name, keys in _GROUPS if any(k in path for k in keys)), "file: other")
        elif head and head[0] == "Rss:":
            totals[current] = totals.get(current, 0) + int(head[1])
    return sorted(((name, round(kb / 1024.0, 1)) for name, kb in totals.items()), key=lambda t: -t[1])


def bench_demo_process() -> list[ServiceBenchRow]:
    """Peak RSS of ``facegate demo --broker none`` (the child's own ``VmHWM``) and its exit code."""
    code, peak = child_peak_rss_mb(["demo", "--broker", "none"])
    return [ServiceBenchRow(f"peak RSS of facegate demo --broker none (exit {code})", 1, round(peak, 1), "MB",
                            "<= 130")]


def bench_memory_stages(video: str | None = None) -> list[ServiceBenchRow]:
    """What each layer of the daemon adds to the resident set, measured in a fresh child process."""
    from facegate.bench.memory_stages import memory_stages

    stages = memory_stages(video)
    rows = [ServiceBenchRow("resident memory by stage in a fresh process (VmRSS after it; MB added)", 1,
                            float("nan"), "", "")]
    previous = None
    for stage in stages:
        added = stage.rss_mb - (previous.rss_mb if previous else 0.0)
        split = "" if previous is None else (f" (private {stage.anon_mb - previous.anon_mb:+.1f}, "
                                             f"file-backed {stage.file_mb - previous.file_mb:+.1f})")
        rows.append(ServiceBenchRow(f"  {stage.stage}: {stage.rss_mb:.1f} MB{split}", 1, round(added, 1), "MB", ""))
        previous = stage
    return rows


def bench_service(video: str | None = None) -> list[ServiceBenchRow]:
    return (bench_throughput(video) + bench_daemon_process(video) + bench_memory_stages(video)
            + bench_demo_process())


__all__ = ["ServiceBenchRow", "bench_daemon_process", "bench_demo_process", "bench_memory_stages", "bench_service",
           "bench_throughput", "memory_breakdown"]
