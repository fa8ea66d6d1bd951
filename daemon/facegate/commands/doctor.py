"""``facegate doctor [--config FILE]``: checks models, TFLite runtime, cameras and the broker.

Prints one line per check (OK / WARN / FAIL), including which variants of each model family are
installed (the wheel leaves the fp32 reference variants and the non-default mtcnn, mediapipe_full and
facemesh models out: those are listed as buildable), then the disk the install takes: facegate's
share and each runtime package's. Exits 0 when nothing failed, 5 otherwise.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from facegate.commands.output import emit_table, emit_text

MB = 1e6


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="diagnose models, cameras and the broker", description=__doc__)
    p.add_argument("-c", "--config", help="YAML configuration file (cameras and broker to check)")
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(handler=run)


def _check_models(rows: list[list[str]]) -> None:
    from facegate.errors import FacegateError
    from facegate.inference.manifest import ModelZoo, verify_file
    from facegate.inference.tflite import runtime_name

    try:
        rows.append(["OK", "tflite runtime", runtime_name()])
    except FacegateError as err:
        rows.append(["FAIL", "tflite runtime", str(err)])
    zoo = ModelZoo()
    for path, message in zoo.errors.items():
        rows.append(["FAIL", f"manifest {path.name}", message])
    for manifest in zoo.all():
        try:
            verify_file(manifest)
            rows.append(["OK", f"model {manifest.name}", f"{manifest.kind} {manifest.family} {manifest.variant}"])
        except FacegateError as err:
            rows.append(["FAIL", f"model {manifest.name}", str(err)])
    rows += variant_rows(zoo)


def variant_rows(zoo: Any) -> list[list[str]]:
    """One row per model family: its installed variants (default marked) and missing build-on-demand
    variants; a family the wheel leaves out entirely (``mtcnn``, ``mediapipe_full``, ``facemesh``) and
    nothing has built is listed as not installed, buildable."""
    from facegate.inference.reference_models import ON_DEMAND_FAMILIES, REFERENCE_MODELS, how_to_get

    families: dict[tuple[str, str], list[Any]] = {}
    for manifest in sorted(zoo.all(), key=lambda m: (m.kind, m.family.casefold(), m.variant)):
        families.setdefault((manifest.kind, manifest.family), []).append(manifest)
    rows = []
    for (kind, family), manifests in families.items():
        variants = {m.variant for m in manifests}
        detail = "installed: " + ", ".join(m.variant + (" (default)" if m.default else "") for m in manifests)
        for ref in REFERENCE_MODELS:
            if ref.kind == kind and ref.family.casefold() == family.casefold() and ref.variant not in variants:
                detail += f"; {ref.variant} not installed, buildable: {how_to_get(ref)}"
        rows.append(["OK", f"variants {kind} {family}", detail])
    installed = {(kind, family.casefold()) for kind, family in families}
    for ref in ON_DEMAND_FAMILIES:
        # MTCNN's R- and O-Net are part of the mtcnn row; an optional backend missing is no failure
        if not ref.part_of and (ref.kind, ref.family.casefold()) not in installed:
            rows.append(["OK", f"variants {ref.kind} {ref.family}", f"not installed, buildable: {how_to_get(ref)}"])
    return rows


def footprint_rows() -> list[list[Any]]:
    """facegate's disk usage, its runtime dependencies' and the total, in MB (as ``du`` counts)."""
    from facegate.footprint import measure

    fp = measure()
    total = fp.total_bytes
    own = f"models {fp.models_bytes / MB:.1f} MB" + (f"; {fp.facegate.note}" if fp.facegate.note else "")
    rows: list[list[Any]] = [["facegate", fp.facegate.version, fp.facegate.bytes / MB,
                              f"{100 * fp.facegate.bytes / total:.0f}%", own]]
    rows += [[d.name, d.version, d.bytes / MB, f"{100 * d.bytes / total:.0f}%", d.note] for d in fp.dependencies]
    rows.append(["runtime total", "", total / MB, "100%", f"facegate and {len(fp.dependencies)} runtime packages"])
    return rows


def _check_cameras(config: Any, timeout: float, rows: list[list[str]]) -> None:
    from facegate.capture.registry import build_source
    from facegate.errors import FacegateError

    for cam in config.cameras:
        if not cam.enabled:
            rows.append(["OK", f"camera {cam.id}", "disabled"])
            continue
        try:
            source = build_source(cam.id, cam.source)
            source.open()
            frame = source.read(timeout)
            source.close()
        except FacegateError as err:
            rows.append(["FAIL", f"camera {cam.id}", str(err)])
            continue
        if frame is None:
            rows.append(["WARN", f"camera {cam.id}", f"opened, but no frame within {timeout:g} s"])
        else:
            rows.append(["OK", f"camera {cam.id}", f"{frame.width}x{frame.height} frame read"])


def _check_broker(config: Any, timeout: float, rows: list[list[str]]) -> None:
    m = config.mqtt
    if not m.enabled:
        rows.append(["OK", "mqtt", "disabled"])
        return
    port = m.port if m.port is not None else (8883 if m.tls.enabled else 1883)
    try:
        with socket.create_connection((m.host, port), timeout=timeout):
            pass
    except OSError as err:
        rows.append(["FAIL", "mqtt broker", f"{m.host}:{port} unreachable ({err}); events will be spooled"])
        return
    rows.append(["OK", "mqtt broker", f"{m.host}:{port} accepts TCP connections"])
    state = config.paths.state_dir
    writable = state.exists() and Path(state).is_dir()
    rows.append(["OK" if writable else "WARN", "state dir", f"{state}" + ("" if writable else " (missing)")])


def run(args: argparse.Namespace) -> int:
    rows: list[list[str]] = []
    _check_models(rows)
    if args.config:
        from facegate.config import load_config
        from facegate.errors import FacegateError

        try:
            config = load_config(args.config)
            rows.append(["OK", "config", str(args.config)])
        except FacegateError as err:
            rows.append(["FAIL", "config", str(err)])
        else:
            from facegate.model_check import missing_models

            rows += [["FAIL", f"config {m.loc}", m.msg] for m in missing_models(config)]
            _check_cameras(config, args.timeout, rows)
            _check_broker(config, args.timeout, rows)
    emit_table(["result", "check", "detail"], rows)
    emit_text("")
    emit_table(["installed package", "version", "MB on disk", "share", "note"], footprint_rows())
    return 5 if any(r[0] == "FAIL" for r in rows) else 0
