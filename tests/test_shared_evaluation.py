"""Accuracy on the internal evaluation data (../shared/data; skipped when absent, CI has it)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

import facegate
from facegate.cli import main
from facegate.engine import get_engine
from facegate.evaluation.identification import evaluate_identification


def test_deepface_detection_expectations(shared_data: Path) -> None:
    couple = facegate.extract_faces(shared_data / "detection" / "deepface_couple.jpg")
    assert len(couple) == 2
    selfie = facegate.extract_faces(shared_data / "detection" / "deepface_selfie-many-people.jpg")
    assert len(selfie) >= 5


def test_deepface_verify_pairs(shared_data: Path) -> None:
    with (shared_data / "pairs.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if "test_verify.py" in r["source"]]
    assert len(rows) >= 10
    for row in rows:
        result = facegate.verify(shared_data / row["img_a"], shared_data / row["img_b"])
        assert result.verified == (row["same"] == "1"), (row, result.distance)


def test_evaluate_peer_pairs_accuracy(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(shared_data / "pairs.csv"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(r["metric"], r["subset"]): r for r in report["results"]}
    peer, everything = rows[("euclidean", "peer")], rows[("euclidean", "all")]
    sys.stdout.write(f"peer pairs: {peer['pairs']} accuracy {peer['accuracy']:.4f}; all pairs: {everything['pairs']} "
          f"accuracy {everything['accuracy']:.4f}, AUC {everything['auc']:.4f}, "
          f"TAR@FAR=1e-3 {everything['tar_at_far_1e3']:.3f}\n")
    assert peer["pairs"] >= 500 and everything["pairs"] >= 990  # nearly every image embedded
    assert peer["accuracy"] >= 0.975
    assert everything["accuracy"] >= 0.975
    assert everything["auc"] >= 0.99


@pytest.mark.slow
def test_identification_rank1_and_open_set(shared_data: Path) -> None:
    engine = get_engine()
    report = evaluate_identification(shared_data / "identities", engine)
    sys.stdout.write(f"{report}\n")
    assert report.probes >= 100
    assert report.rank1 >= 0.95
    assert report.open_set_probes >= 20
    # reported in the README; a door lock must not accept strangers
    assert report.false_accept_rate <= 0.05
