"""``facegate evaluate PAIRS.csv``: verification accuracy, best threshold, ROC AUC, TAR@FAR.

Image paths in the CSV are relative to the CSV's folder (or ``--root``). With ``--detection
detection.csv`` it evaluates face counts per detector instead. ``--identities DIR --cv K`` runs the
identity-disjoint K-fold cross-validation of :mod:`facegate.evaluation.crossval` for several chains in
one run (default, MMOD, and the dlib-native reference when dlib is installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from facegate.commands.common import add_json_arg
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.errors import ConfigError
from facegate.types import METRICS, Metric


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy on a labelled pairs CSV", description=__doc__)
    p.add_argument("pairs", nargs="?", help="CSV with img_a,img_b,same[,source]")
    p.add_argument("--root", help="folder the image paths are relative to (default: the CSV's folder)")
    p.add_argument("-d", "--detector-backend", default="mediapipe")
    p.add_argument("-m", "--model-name", default="Dlib")
    p.add_argument("--model-variant", default=None, help="e.g. int8 or fp32 (default: the model's default)")
    p.add_argument("--distance-metric", default="euclidean", choices=[*METRICS, "all"])
    p.add_argument("--threshold", type=float, default=None, help="threshold to score (default: the model's)")
    p.add_argument("--roc", metavar="OUT.png", help="write a ROC plot")
    p.add_argument("--detection", metavar="DETECTION.csv", help="evaluate detectors on a face-count CSV")
    p.add_argument("--detectors", default="all", help="comma-separated detector backends for --detection")
    p.add_argument("--identities", metavar="DIR",
                   help="1:N evaluation on DIR/<person>/*.jpg: rank-1 (first photo enrolled) and open-set false "
                        "accepts (30%% of the people left out)")
    p.add_argument("--margin", type=float, default=0.0, help="required best/second-best gap for --identities")
    p.add_argument("--calibrate", metavar="DIR",
                   help="fit the thresholds of -m MODEL (an imported model) on DIR/<person>/* photos: per metric "
                        "FAR <= 1e-3 on all impostor pairs, as the bundled model was calibrated")
    p.add_argument("--write", action="store_true", help="with --calibrate: store the fit in the imported manifest")
    p.add_argument("--cv", type=int, metavar="K", default=None,
                   help="with --identities: identity-disjoint K-fold cross-validation (fit on K-1 folds of "
                        "people, score on the held-out one; mean and worst fold)")
    p.add_argument("--chains", default="default,mmod,reference",
                   help="chains compared by --cv (default, mmod, reference = dlib-native, needs dlib)")
    p.add_argument("--target-far", type=float, default=None, help="FAR of the secure operating point (--cv)")
    p.add_argument("--cache", metavar="FILE.npz", help="--cv: keep the embeddings here (a second run embeds nothing)")
    p.add_argument("--threads", type=int, default=1)
    add_json_arg(p)
    p.set_defaults(handler=run)


def _cross_validation(args: argparse.Namespace) -> int:
    from facegate.evaluation.crossval import TARGET_FAR
    from facegate.evaluation.crossval_report import run_cross_validation

    root = Path(args.identities)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of identities")
    if args.cv < 2:
        raise ConfigError("--cv needs at least 2 folds")
    chains = [c for c in args.chains.split(",") if c]
    target = TARGET_FAR if args.target_far is None else args.target_far
    summary = run_cross_validation(root, chains, folds=args.cv, target_far=target,
                                   cache=Path(args.cache) if args.cache else None, num_threads=args.threads)
    if args.json:
        emit_json(summary.to_dict())
        return 0
    emit_text(summary.header())
    emit_table(*summary.pair_table())
    emit_table(*summary.open_set_table())
    for line in summary.notes():
        emit_text(line)
    return 0


def _identification(args: argparse.Namespace) -> int:
    from facegate.engine import get_engine
    from facegate.evaluation.identification import evaluate_identification

    root = Path(args.identities)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of identities")
    metric: Metric = next((m for m in METRICS if m == args.distance_metric), "euclidean")
    engine = get_engine(args.detector_backend, args.model_name, model_variant=args.model_variant,
                        num_threads=args.threads)
    report = evaluate_identification(root, engine, metric=metric, threshold=args.threshold, margin=args.margin)
    if args.json:
        emit_json(dataclasses.asdict(report))
    else:
        emit_table(["figure", "value"], [[k, v] for k, v in dataclasses.asdict(report).items()])
    return 0


def _calibration(args: argparse.Namespace) -> int:
    from facegate.model_calibration import calibrate_model, write_calibration

    entry = calibrate_model(Path(args.calibrate), args.model_name, detector_backend=args.detector_backend,
                            num_threads=args.threads)
    written = write_calibration(args.model_name, entry) if args.write else None
    if args.json:
        emit_json({**entry, "written": str(written) if written else None})
        return 0
    emit_text(f"{entry['model']} ({entry['model_id']}) on {entry['photos']} photos of {entry['people']} people")
    emit_table(["metric", "DeepFace default", "fitted", "balanced", "slope", "fit TAR", "impostors accepted"],
               [[m["metric"], entry["defaults"].get(m["metric"], "-"), f"{m['threshold']:.4f}",
                 f"{m['balanced_threshold']:.4f}", f"{m['confidence_slope']:.2f}", f"{100 * m['fit_tar']:.1f}%",
                 f"{m['fit_false_accepts']}/{m['impostor_pairs']}"] for m in entry["metrics"].values()])
    emit_text(f"written to {written}" if written else "not written (pass --write to store it in the manifest)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibration(args)
    if args.detection:
        from facegate.evaluation.detection import run_detection_command

        code: int = run_detection_command(args)
        return code
    if args.identities and args.cv:
        return _cross_validation(args)
    if args.identities:
        return _identification(args)
    if not args.pairs:
        raise ConfigError("give a pairs CSV (or --detection CSV, or --identities DIR)")
    from facegate.engine import get_engine
    from facegate.evaluation.pairs import (
        EmbeddingCache,
        cross_validated_accuracy,
        pair_distances,
        read_pairs,
        report,
    )
    from facegate.evaluation.roc_plot import RocSeries, roc_plot_png, roc_series

    csv_path = Path(args.pairs)
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path}: no such file")
    root = Path(args.root) if args.root else csv_path.parent
    pairs = read_pairs(csv_path)
    engine = get_engine(args.detector_backend, args.model_name, model_variant=args.model_variant,
                        num_threads=args.threads)
    cache = EmbeddingCache(engine, root)
    metrics: list[Metric] = list(METRICS) if args.distance_metric == "all" else [args.distance_metric]
    interactive = sys.stderr.isatty() and not args.json

    def progress(i: int) -> None:
        if interactive and i % 20 == 0:
            sys.stderr.write(f"\r{i}/{len(pairs)} pairs, {len(cache.vectors)} images embedded")
            sys.stderr.flush()

    rows: list[dict[str, Any]] = []
    curves: list[RocSeries] = []
    impostors = 0
    for metric in metrics:
        kept, dists = pair_distances(pairs, cache, metric, progress)
        if interactive:
            sys.stderr.write("\n")
        threshold = args.threshold if args.threshold is not None else engine.embedder.thresholds.get(metric)
        if threshold is None:
            raise ConfigError(f"model {args.model_name} has no {metric} threshold; pass --threshold")
        for subset, chosen in (("all", kept), ("peer", [p for p in kept if p.peer])):
            idx = [i for i, p in enumerate(kept) if p in chosen] if subset != "all" else list(range(len(kept)))
            rep = report(subset, chosen, dists[idx], float(threshold))
            row = dataclasses.asdict(rep)
            row["metric"] = metric
            row["cv_accuracy"] = cross_validated_accuracy(chosen, dists[idx])
            rows.append(row)
            if subset == "all":
                same = np.array([p.same for p in kept], dtype=bool)
                curves.append(roc_series(metric, dists, same, float(threshold)))
                impostors = int((~same).sum())
    if args.roc:
        roc_plot_png(curves, Path(args.roc), n_impostor=impostors,
                     title=f"ROC: {engine.model_id}, {args.detector_backend}, {len(pairs)} pairs ({csv_path.name})")
    summary = {"pairs_file": str(csv_path), "model": args.model_name, "model_id": engine.model_id,
               "detector_backend": args.detector_backend, "images_embedded": len(cache.vectors),
               "images_without_detected_face": sorted(cache.undetected), "images_failed": cache.failed,
               "results": rows}
    if args.json:
        emit_json(summary)
        return 0
    emit_text(f"{csv_path}: {len(pairs)} pairs, {len(cache.vectors)} images "
              f"({len(cache.undetected)} without a detected face, embedded whole; {len(cache.failed)} failed)")
    emit_table(
        ["metric", "subset", "pairs", "same", "threshold", "accuracy", "best thr", "best acc", "cv acc", "AUC",
         "TAR@1e-2", "TAR@1e-3"],
        [[r["metric"], r["subset"], r["pairs"], r["same"], f"{r['threshold']:.4f}", f"{100 * r['accuracy']:.2f}%",
          f"{r['best_threshold']:.4f}", f"{100 * r['best_accuracy']:.2f}%", f"{100 * r['cv_accuracy']:.2f}%",
          f"{r['auc']:.4f}", f"{100 * r['tar_at_far_1e2']:.1f}%", f"{100 * r['tar_at_far_1e3']:.1f}%"]
         for r in rows],
    )
    return 0
