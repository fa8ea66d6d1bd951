"""``facegate demo``: the whole pipeline on the bundled public-domain photos, no camera needed.

It enrols Barack Obama from ``obama.jpg``, then replays a short synthetic door-camera sequence
built from two *other* photos (``obama2.jpg`` and ``biden.jpg``, with camera motion and noise)
through the daemon: detection, alignment, embedding, gallery match, voting across frames. Expect one
``recognized`` event for Obama and one ``unknown`` event for Biden, printed as JSON lines. Events are
also published to the MQTT broker given by ``--broker`` (default localhost:1883) or spooled on disk
when none is reachable. Exit 0 when the expected events were seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from facegate.commands.output import emit_text

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the full pipeline on bundled sample photos", description=__doc__)
    p.add_argument("--broker", default="localhost:1883", help="MQTT broker host:port ('none' to disable)")
    p.add_argument("--state-dir", help="keep the demo's gallery and spool here (default: a temporary folder)")
    p.add_argument("--device-id", default="demo")
    p.set_defaults(handler=run)


def demo_config(state_dir: Path, frames_dir: Path, broker: str, device_id: str) -> Any:
    from facegate.config.models import FacegateConfig

    mqtt: dict[str, Any] = {"enabled": False}
    if broker.lower() != "none":
        host, _, port = broker.rpartition(":") if ":" in broker else (broker, "", "1883")
        mqtt = {"enabled": True, "host": host or "localhost", "port": int(port or 1883),
                "reconnect": {"initial_s": 1.0, "max_s": 2.0}}
    return FacegateConfig.model_validate({
        "state_dir": str(state_dir),
        "device": {"device_id": device_id, "name": "facegate demo"},
        "cameras": [{"id": "door", "source": {"type": "replay", "path": str(frames_dir),
                                              "fps": "as_fast_as_possible"}}],
        "mqtt": mqtt,
        "stats": {"interval_s": 60},
        "security": {"commands_enabled": False},
    })


def run(args: argparse.Namespace) -> int:
    from facegate.capture.synthetic import iter_demo_frames, sample_path, write_image_folder
    from facegate.enrollment import enroll_photos
    from facegate.face_confirm import release_second_detectors
    from facegate.file_pages import release_file_pages
    from facegate.memory import release_free_memory, tune_allocator
    from facegate.service import Service
    from facegate.types import FaceEvent

    tune_allocator()

    with tempfile.TemporaryDirectory(prefix="facegate-demo-") as tmp:
        state_dir = Path(args.state_dir) if args.state_dir else Path(tmp) / "state"
        frames_dir = Path(tmp) / "frames"
        # one frame at a time: the sequence (46 frames of 640x360, 32 MB) was the demo's peak; the daemon
        # replays them from the folder
        frame_count = len(write_image_folder((f for f, _ in iter_demo_frames(("obama2.jpg", "biden.jpg"))),
                                             frames_dir))
        config = demo_config(state_dir, frames_dir, args.broker, args.device_id)
        events: list[FaceEvent] = []
        service = Service(config, stdout=sys.stdout, lossless=True, on_event=events.append)
        release_file_pages()  # before enrolment adds its second-opinion detector on top (the peak)
        outcome = enroll_photos(service.gallery, service.engine, "barack_obama", "Barack Obama",
                                [("obama.jpg", sample_path("obama.jpg"))])
        # the replay needs neither enrolment's second-opinion detector (~25 MB) nor its freed buffers
        release_second_detectors()
        release_free_memory()
        release_file_pages()  # no worker thread runs before service.run()
        sys.stderr.write(f"enrolled Barack Obama from obama.jpg: {outcome.photos[0].status}; replaying "
                         f"{frame_count} frames (obama2.jpg, then biden.jpg)\n")
        service.install_signal_handlers()
        code = service.run()
    recognized = [e for e in events if e.type == "recognized"]
    unknown = [e for e in events if e.type == "unknown"]
    summary = {"recognized": [e.name for e in recognized], "unknown": len(unknown)}
    sys.stderr.write("demo summary: " + json.dumps(summary) + "\n")
    ok = [e.person_id for e in recognized] == ["barack_obama"] and len(unknown) == 1
    if not ok:
        emit_text("demo: unexpected events (expected one recognized Barack Obama and one unknown)")
    return code if code != 0 else (0 if ok else 1)
