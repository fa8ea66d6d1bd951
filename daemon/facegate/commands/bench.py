"""``facegate bench``: printed benchmark tables (speed and memory targets live here, not in tests).

Without options: per-stage latency and end-to-end verify. ``--gallery`` 1:N search over synthetic
galleries, ``--pipeline [VIDEO]`` daemon throughput/latency/RSS, ``--detectors`` detector comparison,
``--alignment`` landmark providers and face chips, ``--photo [FOLDER]`` ``represent(path)`` on photo
files (old and new mode alternated, and face_recognition when installed), ``--hostile`` peak RSS of
``facegate detect`` on a 20000x20000 PNG bomb with the pixel cap on and off (needs ~2.5 GB free),
``--all`` everything but ``--hostile``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from facegate.commands.common import add_json_arg
from facegate.commands.output import emit_json, emit_table, emit_text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="print benchmark tables", description=__doc__)
    p.add_argument("--stages", action="store_true", help="per-stage latency (default when nothing else is asked)")
    p.add_argument("--gallery", action="store_true", help="1:N search time over synthetic galleries")
    p.add_argument("--gallery-sizes", default="10000,100000,1000000")
    p.add_argument("--pipeline", nargs="?", const="", default=None, metavar="VIDEO",
                   help="full pipeline on a replay (default: the synthetic demo sequence)")
    p.add_argument("--detectors", action="store_true", help="detector comparison (ms per 640x480 image)")
    p.add_argument("--analysis", action="store_true", help="added cost per face of analysis and liveness")
    p.add_argument("--alignment", action="store_true", help="landmark providers and face chip latency per face")
    p.add_argument("--photo", nargs="?", const="", default=None, metavar="FOLDER",
                   help="represent(path) on photos, old/new mode and face_recognition alternated "
                   "(default: the packaged samples and scikit-image's astronaut at several sizes)")
    p.add_argument("--photo-mp", default="0,1000", metavar="MIN,MAX",
                   help="with a FOLDER: only photos of MIN to MAX megapixels (e.g. 0.4,3.4)")
    p.add_argument("--hostile", action="store_true",
                   help="peak RSS of detect on a 20000x20000 PNG bomb, pixel cap on and off (~2.5 GB free)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--repeat", type=int, default=30)
    add_json_arg(p)
    p.set_defaults(handler=run)


def _rows(items: list[Any]) -> tuple[list[str], list[list[Any]]]:
    if not items:
        return [], []
    fields = [f.name for f in dataclasses.fields(items[0])]
    return fields, [[getattr(r, f) for f in fields] for r in items]


def _show(title: str, items: list[Any], out: dict[str, Any], as_json: bool) -> None:
    out[title] = [dataclasses.asdict(r) for r in items]
    if not as_json:
        emit_text(f"\n## {title}")
        headers, rows = _rows(items)
        if rows:
            emit_table(headers, rows)


def _photo(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from contextlib import nullcontext
    from pathlib import Path

    from facegate.bench.photo import bench_photo, default_photos, photos_in
    from facegate.errors import ConfigError

    folder = args.photo or None
    if folder is None:
        source: Any = default_photos()
    else:
        low, high = (float(v) * 1e6 for v in args.photo_mp.split(","))
        source = nullcontext(photos_in(Path(folder), min_pixels=int(low), max_pixels=int(high)))
    with source as photos:
        if not photos:
            raise ConfigError(f"no photos to benchmark in {folder}")
        rows, agreements = bench_photo(photos, rounds=max(1, min(args.repeat, 3)))
    _show("photo path: represent(path) per photo", rows, out, args.json)
    _show("photo path: earlier modes' results vs the default's", agreements, out, args.json)


def run(args: argparse.Namespace) -> int:
    everything = args.all
    nothing = not (args.stages or args.gallery or args.pipeline is not None or args.detectors or args.analysis
                   or args.alignment or args.hostile or args.photo is not None)
    out: dict[str, Any] = {}
    if everything or nothing or args.stages:
        from facegate.bench.stages import bench_stages, bench_verify

        _show("stages", bench_stages(repeat=args.repeat), out, args.json)
        ms = bench_verify(threads=1)
        out["verify_640x480_1thread_ms"] = ms
        if not args.json:
            emit_text(f"\nverify of two 640x480 photos end to end (1 thread): median {ms:.1f} ms")
    if everything or args.detectors:
        from facegate.bench.detectors import bench_detectors

        _show("detectors", bench_detectors(), out, args.json)
    if everything or args.gallery:
        from facegate.bench.gallery import bench_gallery

        sizes = tuple(int(s) for s in args.gallery_sizes.split(",") if s)
        _show("gallery 1:N search", bench_gallery(sizes=sizes), out, args.json)
    if everything or args.pipeline is not None:
        from facegate.bench.service import bench_service

        _show("pipeline", bench_service(video=args.pipeline or None), out, args.json)
    if everything or args.analysis:
        from facegate.bench.analysis import bench_analysis

        _show("analysis per face", bench_analysis(), out, args.json)
    if everything or args.alignment:
        from facegate.bench.alignment import bench_alignment

        _show("landmarks and alignment per face", bench_alignment(repeat=args.repeat), out, args.json)
    if everything or args.photo is not None:
        _photo(args, out)
    if args.hostile:
        from facegate.bench.hostile import bench_hostile

        _show("hostile image: facegate detect on a 20000x20000 PNG", bench_hostile(), out, args.json)
    if args.json:
        emit_json(out)
    return 0
