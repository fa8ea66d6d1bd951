"""``facegate enroll NAME IMG...|DIR``: enrol photos of one person (the usable ones in one transaction).

Exit 0 when at least one photo was stored or every photo was already enrolled for this person (running
the same enrolment again is not an error), 3 when no photo had a usable face, 4 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from facegate.commands.common import add_json_arg
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("enroll", help="enrol a person from photos or a folder", description=__doc__)
    p.add_argument("name", help="display name (the person id is derived from it unless --id is given)")
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    p.add_argument("--id", dest="person_id", help="person id (slug: a-z, 0-9, _ and -)")
    p.add_argument("--gallery", help="gallery database (default: $FACEGATE_GALLERY or the state directory)")
    p.add_argument("--replace", action="store_true", help="replace the person's existing embeddings")
    p.add_argument("--face", type=int, default=None, metavar="N",
                   help="take face N of each photo (0 = largest, as `facegate detect --draw` numbers them) "
                        "instead of the automatic choice")
    p.add_argument("-d", "--detector-backend", default="mediapipe")
    p.add_argument("-m", "--model-name", default="Dlib")
    add_json_arg(p)
    p.set_defaults(handler=run)


def _progress_bar(done: int, total: int, label: str) -> None:
    width = 30
    filled = width * done // max(1, total)
    name = label if len(label) <= 40 else "..." + label[-37:]
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name}\033[K")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from facegate.api import default_gallery_path
    from facegate.enrollment import IMAGE_SUFFIXES, enroll_photos, iter_photo_paths
    from facegate.gallery.records import slugify
    from facegate.library.options import engine_for

    paths = iter_photo_paths(args.images)
    if not paths:
        raise ConfigError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(args.images)}")
    person_id = args.person_id or slugify(args.name)
    engine = engine_for(args.model_name, args.detector_backend)
    gallery_path = Path(args.gallery) if args.gallery else default_gallery_path()
    gallery_path.parent.mkdir(parents=True, exist_ok=True)
    show_progress = sys.stderr.isatty() and len(paths) > 1 and not args.json
    photos: list[tuple[str, Any]] = [(str(path), path) for path in paths]
    with engine.open_gallery(gallery_path) as gallery:
        outcome = enroll_photos(gallery, engine, person_id, args.name, photos, replace=args.replace,
                                face_index=args.face, progress=_progress_bar if show_progress else None)
    if show_progress:
        sys.stderr.write("\r\033[K")
    already = not outcome.ok and all(p.status == "duplicate" for p in outcome.photos)
    if args.json:
        emit_json({**outcome.to_dict(), "already_enrolled": already})
    elif already:
        emit_text(f"{args.name} ({person_id}): already enrolled with these {len(paths)} photo(s) in {gallery_path}")
    else:
        emit_text(f"{args.name} ({person_id}): {outcome.stored} of {len(paths)} photo(s) stored in {gallery_path}")
        emit_table(["photo", "status", "quality", "detail"],
                   [[p.label, p.status, "" if p.quality is None else f"{p.quality:.2f}", p.detail]
                    for p in outcome.photos])
        for line in outcome.warnings:
            emit_text(f"warning: {line}")
    if outcome.ok or already:
        return 0
    if all(p.status in ("no_face", "several_faces") for p in outcome.photos):
        return 3
    return 4
