"""DeepFace's folder-of-images mode: a directory of photos kept in sync with a gallery database.

Layout (``folder`` is what the user passes as the gallery):

* ``folder/<person>/**/<photo>`` -- one sub-folder per person; the sub-folder's name is the display
  name and its slug (:func:`~facegate.gallery.records.slugify`) the person id;
* ``folder/<photo>`` -- a flat file is its own person, named by the file stem with a trailing
  ``_<n>`` / ``-<n>`` / `` <n>`` counter removed (``alice_2.jpg`` -> ``alice``);
* names starting with ``.`` are ignored (the database lives there: ``.facegate-<model_id>.sqlite`` by
  default, one per model, so switching models never mixes vector spaces).

Each sync stats every image, hashes only files whose size or mtime changed, embeds only files whose
content changed (through the caller's ``embed_image``, so this module loads no model), and applies
each person's changes in one transaction. A file that cannot be embedded (unreadable, no face, wrong
model) is recorded with its reason and skipped until it changes; a photo refused as an outlier or a
duplicate likewise. A person whose last photo disappears is deleted (tombstoned) if the folder sync
created them. Nothing here aborts the sync because of one bad image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from facegate.errors import GalleryError
from facegate.gallery.outliers import OutlierPolicy
from facegate.gallery.records import EnrollItem, slugify
from facegate.gallery.store import FileState, SqliteGallery
from facegate.types import Embedding

logger = logging.getLogger(__name__)

#: ``embed_image(path) -> [(embedding, quality 0..1), ...]``, best (largest) face first; may raise
EmbedImage = Callable[[Path], Sequence[tuple[Embedding, float]]]
#: ``progress(done, total, relative path)`` after each embedded file
Progress = Callable[[int, int, str], None]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_COUNTER = re.compile(r"[ _-]\d+$")
#: marks people created by the folder sync (removed again when their folder empties)
FOLDER_SOURCE = "folder"


def default_db_path(folder: Path, model_id: str) -> Path:
    return folder / f".facegate-{slugify(model_id)}.sqlite"


@dataclass(frozen=True, slots=True)
class FolderFile:
    """An image in the folder: ``path`` relative to it (POSIX separators)."""

    path: str
    person_id: str
    name: str
    location: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class FileIssue:
    path: str
    status: str  # "error", "outlier", "duplicate"
    detail: str


@dataclass(frozen=True, slots=True)
class FolderSyncReport:
    db_path: Path
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    people_added: int = 0
    people_removed: int = 0
    issues: tuple[FileIssue, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "db_path": str(self.db_path),
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "people_added": self.people_added,
            "people_removed": self.people_removed,
            "issues": [{"path": i.path, "status": i.status, "detail": i.detail} for i in self.issues],
        }


def person_for(relative: PurePosixPath) -> tuple[str, str]:
    """``(person_id, display name)`` for a file path relative to the folder."""
    name = relative.parts[0] if len(relative.parts) > 1 else (_COUNTER.sub("", relative.stem) or relative.stem)
    return slugify(name), name


def scan_folder(folder: Path) -> tuple[list[FolderFile], list[FileIssue]]:
    """Every image under ``folder`` (sorted), and the files skipped because their person id collides."""
    found: list[FolderFile] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for fname in sorted(files):
            if fname.startswith(".") or Path(fname).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            location = Path(root) / fname
            relative = PurePosixPath(location.relative_to(folder).as_posix())
            try:
                st = location.stat()
            except OSError as err:
                logger.warning("folder sync: cannot stat %s: %s", location, err)
                continue
            pid, name = person_for(relative)
            found.append(FolderFile(str(relative), pid, name, location, st.st_size, st.st_mtime_ns))
    # two spellings (e.g. "Anna" and "anna") must not silently merge into one person
    owner: dict[str, str] = {}
    kept: list[FolderFile] = []
    issues: list[FileIssue] = []
    for f in found:
        first = owner.setdefault(f.person_id, f.name)
        if first != f.name:
            issues.append(FileIssue(f.path, "error", f"person id {f.person_id!r} is already used by {first!r}"))
            continue
        kept.append(f)
    return kept, issues


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _PersonPlan:
    person_id: str
    name: str
    embed: list[tuple[FolderFile, str]] = field(default_factory=list)  # (file, sha256)
    drop: list[str] = field(default_factory=list)  # tracked paths whose embeddings must go
    forget: list[str] = field(default_factory=list)  # tracked paths gone from disk
    touch: list[FileState] = field(default_factory=list)  # same content, new mtime


class FolderSync:
    """Keeps the gallery at ``db_path`` (default: inside ``folder``) in step with ``folder``."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        embed_image: EmbedImage,
        *,
        model_id: str,
        db_path: str | os.PathLike[str] | None = None,
        detector: str = "",
        alignment: str = "",
        outliers: OutlierPolicy | None = None,
        progress: Progress | None = None,
        device_id: str = "local",
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise GalleryError(f"gallery folder {self.folder} does not exist or is not a directory")
        self.embed_image = embed_image
        self.model_id = model_id
        self.db_path = Path(db_path) if db_path is not None else default_db_path(self.folder, model_id)
        self.detector = detector
        self.alignment = alignment
        self.outliers = outliers
        self.progress = progress
        self.gallery = SqliteGallery(self.db_path, model_id=model_id, device_id=device_id, outliers=outliers)

    def close(self) -> None:
        self.gallery.close()

    def __enter__(self) -> FolderSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(self, *, retry_failed: bool = False) -> FolderSyncReport:
        """Bring the gallery in line with the folder. ``retry_failed`` re-embeds files refused before."""
        files, issues = scan_folder(self.folder)
        tracked = self.gallery.file_states()
        plans: dict[str, _PersonPlan] = {}

        def plan(pid: str, name: str) -> _PersonPlan:
            return plans.setdefault(pid, _PersonPlan(pid, name))

        unchanged = 0
        present = {f.path for f in files}
        for f in files:
            old = tracked.get(f.path)
            retry = retry_failed and old is not None and old.status != "ok"
            if old and old.person_id == f.person_id and (old.size, old.mtime_ns) == (f.size, f.mtime_ns) and not retry:
                unchanged += 1
                continue
            try:
                digest = sha256_of(f.location)
            except OSError as err:
                issues.append(FileIssue(f.path, "error", f"cannot read: {err}"))
                continue
            if old and old.person_id == f.person_id and old.sha256 == digest and not retry:
                unchanged += 1
                plan(f.person_id, f.name).touch.append(
                    FileState(f.path, f.person_id, f.size, f.mtime_ns, digest, old.status, old.detail)
                )
                continue
            plan(f.person_id, f.name).embed.append((f, digest))
            if old is not None:
                plan(old.person_id, old.person_id).drop.append(f.path)
        for path, old in tracked.items():
            if path not in present:
                p = plan(old.person_id, old.person_id)
                p.drop.append(path)
                p.forget.append(path)

        total = sum(len(p.embed) for p in plans.values())
        done = 0
        counts = {"added": 0, "changed": 0, "people_added": 0, "people_removed": 0}
        for pid in sorted(plans):
            p = plans[pid]
            embedded: list[tuple[FolderFile, str, Embedding, float, str]] = []
            failed: list[tuple[FolderFile, str, str]] = []
            for f, digest in p.embed:
                outcome = self._embed(f)
                if isinstance(outcome, str):
                    failed.append((f, digest, outcome))
                else:
                    embedded.append((f, digest, *outcome))
                done += 1
                if self.progress is not None:
                    self.progress(done, total, f.path)
            try:
                self._apply(p, embedded=embedded, failed=failed, tracked=tracked, counts=counts, issues=issues)
            except GalleryError as err:
                logger.warning("folder sync: person %s not updated: %s", pid, err)
                issues.extend(FileIssue(f.path, "error", str(err)) for f, *_ in embedded)
        report = FolderSyncReport(
            db_path=self.db_path,
            added=counts["added"],
            changed=counts["changed"],
            removed=sum(len(p.forget) for p in plans.values()),
            unchanged=unchanged,
            people_added=counts["people_added"],
            people_removed=counts["people_removed"],
            issues=tuple(sorted(issues, key=lambda i: i.path)),
        )
        logger.info(
            "folder sync %s: %d added, %d changed, %d removed, %d unchanged, %d issues",
            self.folder, report.added, report.changed, report.removed, report.unchanged, len(report.issues),
        )
        return report

    def _embed(self, f: FolderFile) -> tuple[Embedding, float, str] | str:
        """``(embedding, quality, note)`` of the file's best face, or the reason it cannot be enrolled."""
        try:
            faces = list(self.embed_image(f.location))
        except Exception as err:  # any failure of one image must not stop the sync
            logger.info("folder sync: %s skipped: %s", f.path, err)
            return f"{type(err).__name__}: {err}"
        if not faces:
            return "no face found"
        embedding, quality = faces[0]
        if embedding.model_id != self.model_id:
            return f"embedding of model {embedding.model_id!r}, this gallery holds {self.model_id!r}"
        note = f"{len(faces)} faces; enrolled the first" if len(faces) > 1 else ""
        return embedding, float(quality), note

    def _apply(
        self,
        p: _PersonPlan,
        *,
        embedded: list[tuple[FolderFile, str, Embedding, float, str]],
        failed: list[tuple[FolderFile, str, str]],
        tracked: dict[str, FileState],
        counts: dict[str, int],
        issues: list[FileIssue],
    ) -> None:
        now = time.time()
        with self.gallery.transaction("folder_sync") as txn:
            row = txn.person(p.person_id)
            live = row is not None and not row.deleted
            name = row.name if live and row is not None else p.name
            drop = sorted(set(p.drop))
            report = None
            if embedded or (drop and live):
                items = [
                    EnrollItem(emb, self.detector, self.alignment, quality, digest, f.path, f.path)
                    for f, digest, emb, quality, _ in embedded
                ]
                report = txn.enroll(
                    p.person_id,
                    name,
                    items,
                    metadata=None if live else {"source": FOLDER_SOURCE},
                    outliers=self.outliers,
                    drop_sources=drop if live else (),
                )
            rejected = {r.index: r for r in report.rejected} if report is not None else {}
            for i, (f, digest, _, _, note) in enumerate(embedded):
                reason = rejected.get(i)
                if reason is None:
                    status, detail = "ok", note
                    counts["changed" if f.path in tracked else "added"] += 1
                else:
                    status, detail = reason.reason, reason.detail
                    issues.append(FileIssue(f.path, status, detail))
                txn.set_file_state(
                    FileState(f.path, p.person_id, f.size, f.mtime_ns, digest, status, detail, now)
                )
            for f, digest, detail in failed:
                issues.append(FileIssue(f.path, "error", detail))
                txn.set_file_state(FileState(f.path, p.person_id, f.size, f.mtime_ns, digest, "error", detail, now))
            for state in p.touch:
                txn.set_file_state(state)
            for path in p.forget:
                txn.delete_file_state(path)
            if report is not None and report.created and report.stored:
                counts["people_added"] += 1
            after = txn.person(p.person_id)
            if (
                after is not None
                and not after.deleted
                and after.metadata.get("source") == FOLDER_SOURCE
                and txn.embedding_count(p.person_id) == 0
            ):
                txn.remove(p.person_id)
                counts["people_removed"] += 1


def sync_folder(
    folder: str | os.PathLike[str],
    embed_image: EmbedImage,
    *,
    model_id: str,
    db_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> FolderSyncReport:
    """One-shot :meth:`FolderSync.sync` (opens and closes the gallery)."""
    with FolderSync(folder, embed_image, model_id=model_id, db_path=db_path, **options) as syncer:
        return syncer.sync()


__all__ = [
    "IMAGE_SUFFIXES",
    "EmbedImage",
    "FileIssue",
    "FolderFile",
    "FolderSync",
    "FolderSyncReport",
    "default_db_path",
    "person_for",
    "scan_folder",
    "sync_folder",
]
