"""Added cost per face of attribute analysis and liveness (median ms, one thread).

Every row is the time one more face adds on top of detection, landmarks and embedding: the head's own
chip cut from the frame plus its inference, the daemon's analyzer (once per track, from the 150 px
chip), and a liveness update (run on every frame of an undecided track).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from facegate.analysis.age_gender import AgeModel, GenderModel
from facegate.analysis.analyzer import AttributeAnalyzer
from facegate.analysis.api import Region, get_models
from facegate.analysis.emotion import EmotionModel
from facegate.analysis.liveness import LivenessChecker, LivenessSettings, MeshSource
from facegate.analysis.views import source_view
from facegate.bench.stages import sample_frame
from facegate.bench.timing import median_ms
from facegate.engine import get_engine
from facegate.errors import ModelNotInstalledError
from facegate.inference.manifest import default_zoo
from facegate.types import Frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnalysisRow:
    item: str
    model: str
    threads: int
    median_ms: float


def bench_analysis(repeat: int = 30, threads: int = 1) -> list[AnalysisRow]:
    """Rows for each attribute model variant, the three default heads together, the daemon's
    analyzer, and a liveness update with one and two FaceMesh passes (left out, logged, where FaceMesh is
    not installed)."""
    frame = sample_frame()
    face = get_engine(num_threads=threads).faces(frame)[0]
    view = source_view(frame, face.aligned.detection)
    zoo = default_zoo()
    rows: list[AnalysisRow] = []
    for manifest in zoo.all():
        if manifest.kind == "emotion":
            ms = median_ms(partial(EmotionModel(manifest, num_threads=threads).probabilities, [view]), repeat=repeat)
        elif manifest.kind == "age":
            ms = median_ms(partial(AgeModel(manifest, num_threads=threads).years, [view]), repeat=repeat)
        elif manifest.kind == "gender":
            ms = median_ms(partial(GenderModel(manifest, num_threads=threads).probabilities, [view]), repeat=repeat)
        else:
            continue
        rows.append(AnalysisRow(f"{manifest.kind} (chip + inference)", manifest.name, threads, ms))
    models = get_models(("emotion", "age", "gender"), threads)
    region = Region.from_detection(face.detection)
    rows.append(AnalysisRow("emotion+age+gender", "defaults", threads,
                            median_ms(lambda: models.predict([view], [region], [1.0]), repeat=repeat)))
    analyzer = AttributeAnalyzer(models=models)
    rows.append(AnalysisRow("daemon analyzer, once per track", "defaults, from the 150 px chip", threads,
                            median_ms(lambda: analyzer.analyze(face.aligned), repeat=repeat)))
    never = LivenessSettings(mode="blink+motion", window_s=1e9, motion_min_parallax=1e9)
    image = Frame(image=frame)
    for refine in (True, False):
        try:
            mesh = MeshSource(threads, refine=refine)
        except ModelNotInstalledError as err:  # FaceMesh is built on demand in an installed facegate
            logger.info("skipping the liveness rows: %s", err)
            break
        checker = LivenessChecker(never, mesh=mesh)
        rows.append(AnalysisRow("liveness update, every frame", "facemesh x2 (refined)" if refine else "facemesh x1",
                                threads, median_ms(partial(checker.update, 1, face.detection, image), repeat=repeat)))
    return rows


__all__ = ["AnalysisRow", "bench_analysis"]
