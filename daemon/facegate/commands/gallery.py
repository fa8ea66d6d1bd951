"""``facegate gallery list|remove|rename|export|import``: manage the gallery database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facegate.commands.common import add_json_arg
from facegate.commands.output import emit_json, emit_table, emit_text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gallery", help="list, remove, rename, export or import people", description=__doc__)
    p.add_argument("--gallery", help="gallery database (default: $FACEGATE_GALLERY or the state directory)")
    sub = p.add_subparsers(dest="gallery_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="enrolled people")
    add_json_arg(ls)
    rm = sub.add_parser("remove", help="delete a person (kept as a tombstone for fleet sync)")
    rm.add_argument("person_id")
    rn = sub.add_parser("rename", help="change a person's display name")
    rn.add_argument("person_id")
    rn.add_argument("name")
    ex = sub.add_parser("export", help="write people and embeddings as JSON (backup, migration)")
    ex.add_argument("file")
    im = sub.add_parser("import", help="read a JSON export (newer records win)")
    im.add_argument("file")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from facegate.api import default_gallery_path
    from facegate.errors import ConfigError
    from facegate.gallery.exchange import export_gallery, import_gallery
    from facegate.gallery.store import SqliteGallery

    path = Path(args.gallery) if args.gallery else default_gallery_path()
    if args.gallery_command != "import" and not path.exists():
        raise ConfigError(f"gallery {path} does not exist; enrol people first (facegate enroll)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with SqliteGallery(path) as gallery:
        if args.gallery_command == "list":
            people = gallery.people()
            if args.json:
                emit_json([{"person_id": p.person_id, "name": p.name, "embeddings": p.embedding_count,
                            "models": list(p.model_ids), "version": p.version, "metadata": dict(p.metadata)}
                           for p in people])
            else:
                emit_text(f"{path}: {len(people)} people")
                if people:
                    emit_table(["id", "name", "embeddings", "models", "version"],
                               [[p.person_id, p.name, p.embedding_count, ",".join(p.model_ids), p.version]
                                for p in people])
        elif args.gallery_command == "remove":
            gallery.remove(args.person_id)
            emit_text(f"removed {args.person_id}")
        elif args.gallery_command == "rename":
            gallery.rename(args.person_id, args.name)
            emit_text(f"renamed {args.person_id} to {args.name}")
        elif args.gallery_command == "export":
            count = export_gallery(gallery, args.file)
            emit_text(f"exported {count} people to {args.file}")
        elif args.gallery_command == "import":
            report = import_gallery(gallery, args.file)
            emit_text(f"imported from {args.file}: {report}")
    return 0
