"""1:N identification on a folder of identities (``<root>/<person>/<n>.jpg``).

Closed set: the first photo (sorted by name) of every person is enrolled, every other photo is a probe;
rank-1 accuracy counts probes whose best-ranked person is their own (regardless of the threshold), and
``identified`` counts probes named correctly with the threshold and margin applied.

Open set: a deterministic 30% of the people (crc32 of the folder name) are left out of the gallery; each
of their photos is a probe that must come out *unknown*; the false-accept rate is the share that the
matcher names as somebody at the default threshold and margin.
"""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from facegate.engine import FaceEngine
from facegate.enrollment import IMAGE_SUFFIXES, enroll_photos
from facegate.errors import FacegateError
from facegate.evaluation.pairs import EmbeddingCache
from facegate.matcher import Matcher
from facegate.types import Embedding, Metric


@dataclass(frozen=True, slots=True)
class IdentificationReport:
    people: int
    enrolled: int
    probes: int
    rank1: float
    identified: float
    open_set_people_left_out: int
    open_set_probes: int
    false_accepts: int
    false_accept_rate: float
    threshold: float
    margin: float


def photos_by_person(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if photos:
            out[folder.name] = photos
    return out


def left_out(person: str, share: float = 0.3) -> bool:
    return (zlib.crc32(person.encode()) % 1000) < share * 1000


def evaluate_identification(
    root: Path,
    engine: FaceEngine,
    *,
    metric: Metric = "euclidean",
    threshold: float | None = None,
    margin: float = 0.0,
    open_set_share: float = 0.3,
) -> IdentificationReport:
    people = photos_by_person(root)
    thr = engine.embedder.thresholds[metric] if threshold is None else threshold
    cache = EmbeddingCache(engine, root)

    def probe(path: Path) -> Embedding | None:
        vector = cache.get(str(path.relative_to(root)))
        return None if vector is None else Embedding(vector, engine.model_id)

    with tempfile.TemporaryDirectory() as tmp:
        # closed set: everybody's first photo enrolled
        closed = engine.open_gallery(Path(tmp) / "closed.sqlite3")
        enrolled = 0
        for person, photos in people.items():
            if enroll_photos(closed, engine, person, person, [(str(photos[0]), photos[0])]).ok:
                enrolled += 1
        matcher = Matcher(closed, engine.model_id, metric=metric, threshold=thr, margin=margin, k=2)
        probes = hits = named = 0
        for person, photos in people.items():
            for path in photos[1:]:
                emb = probe(path)
                if emb is None:
                    continue
                result = matcher.match(emb)
                probes += 1
                hits += bool(result.candidates) and result.candidates[0].person_id == person
                named += result.person_id == person
        closed.close()
        # open set: 30% of the people never enrolled
        opened = engine.open_gallery(Path(tmp) / "open.sqlite3")
        outsiders = [p for p in people if left_out(p, open_set_share)]
        for person, photos in people.items():
            if person not in outsiders:
                try:
                    enroll_photos(opened, engine, person, person, [(str(photos[0]), photos[0])])
                except FacegateError:
                    continue
        matcher = Matcher(opened, engine.model_id, metric=metric, threshold=thr, margin=margin, k=2)
        open_probes = false_accepts = 0
        for person in outsiders:
            for path in people[person]:
                emb = probe(path)
                if emb is None:
                    continue
                open_probes += 1
                false_accepts += matcher.match(emb).person_id is not None
        opened.close()
    return IdentificationReport(
        people=len(people),
        enrolled=enrolled,
        probes=probes,
        rank1=hits / max(1, probes),
        identified=named / max(1, probes),
        open_set_people_left_out=len(outsiders),
        open_set_probes=open_probes,
        false_accepts=false_accepts,
        false_accept_rate=false_accepts / max(1, open_probes),
        threshold=thr,
        margin=margin,
    )


__all__ = ["IdentificationReport", "evaluate_identification", "left_out", "photos_by_person"]
