"""Remote enrolment of a photo with several faces: ``face_index`` names one (0 = largest, the numbers of
``facegate detect --draw`` and ``facegate enroll --face N``); without it the photo is still refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facegate.engine import FaceEngine
from facegate.images import load_image
from facegate.matcher import distance
from facegate.remote.commands import command_topic
from facegate.remote.schemas import CommandKind
from facegate.remote.signing import sign_command
from facegate.types import ImageBGR
from tests.fixtures.mosquitto import MosquittoBroker, MqttCollector
from tests.fixtures.remote_device import SECRET, start_device, write_device_config
from tests.test_remote_commands import Rig, make_rig


def _jpeg(image: ImageBGR) -> str:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


@pytest.fixture
def group(samples_dir: Path) -> ImageBGR:
    """Obama and Biden side by side at the same height: two faces of similar size, neither the subject."""
    obama = load_image(samples_dir / "obama.jpg")
    biden = load_image(samples_dir / "biden.jpg")
    h = obama.shape[0]
    return np.hstack([obama, cv2.resize(biden, (round(biden.shape[1] * h / biden.shape[0]), h))])


def _biden_index(engine: FaceEngine, group: ImageBGR, samples_dir: Path) -> tuple[int, np.ndarray[Any, Any]]:
    """Biden's number in the group photo (faces numbered largest first) and his reference vector."""
    faces = sorted(engine.represent(group), key=lambda r: r.detection.box.area, reverse=True)
    assert len(faces) == 2
    biden = engine.represent(load_image(samples_dir / "biden.jpg"))[0].embedding
    assert biden is not None
    d = [distance(f.embedding.vector, biden.vector, "euclidean") for f in faces if f.embedding is not None]
    return int(np.argmin(d)), biden.vector


@pytest.fixture
def rig(tmp_path: Path, engine: FaceEngine) -> Iterator[Rig]:
    r = make_rig(tmp_path, engine)
    yield r
    r.gallery.close()


def test_face_index_picks_the_face_and_bad_numbers_are_reported(rig: Rig, engine: FaceEngine, group: ImageBGR,
                                                                samples_dir: Path) -> None:
    index, biden = _biden_index(engine, group, samples_dir)
    photo = _jpeg(group)
    refused = rig.send("gallery/enroll", {"request_id": "fi-1", "person_id": "biden", "name": "Joe Biden",
                                          "photos": [{"image": photo, "label": "group"}]})
    assert refused.code == "nothing_enrolled"
    (item,) = json.loads(refused.to_json())["result"]["photos"]
    assert item["outcome"] == "several_faces" and "face_index" in item["detail"] and item["faces"] == 2

    out_of_range = rig.send("gallery/enroll", {"request_id": "fi-2", "person_id": "biden", "name": "Joe Biden",
                                               "photos": [{"image": photo, "label": "group", "face_index": 2}]})
    assert out_of_range.code == "nothing_enrolled"
    (item,) = json.loads(out_of_range.to_json())["result"]["photos"]
    assert item["outcome"] == "invalid" and "face_index 2 out of range: 2 face(s) found (0..1)" in item["detail"]
    assert rig.gallery.revision == 0

    negative = rig.send("gallery/enroll", {"request_id": "fi-3", "person_id": "biden", "name": "Joe Biden",
                                           "photos": [{"image": photo, "face_index": -1}]})
    assert negative.code == "invalid"
    assert json.loads(negative.to_json())["error"]["fields"][0]["loc"] == "photos[0].face_index"

    chosen = rig.send("gallery/enroll", {"request_id": "fi-4", "person_id": "biden", "name": "Joe Biden",
                                         "photos": [{"image": photo, "label": "group", "face_index": index}]})
    assert chosen.ok, chosen.payload
    (item,) = json.loads(chosen.to_json())["result"]["photos"]
    assert item["outcome"] == "ok" and item["faces"] == 2 and item["detail"] == f"face {index} of 2, as asked"
    (stored,) = rig.gallery.snapshot(engine.model_id).matrix
    assert distance(stored, biden, "euclidean") < 0.2  # Biden's face was stored, not Obama's


def test_face_index_over_a_real_broker(tmp_path: Path, mosquitto: MosquittoBroker, topic_prefix: str,
                                       mqtt_collector: Callable[..., MqttCollector], engine: FaceEngine,
                                       group: ImageBGR, samples_dir: Path) -> None:
    index, biden = _biden_index(engine, group, samples_dir)
    config_path = write_device_config(tmp_path / "door1", device_id="door1", port=mosquitto.port,
                                      prefix=topic_prefix)
    base = f"{topic_prefix}/door1"
    collector = mqtt_collector(mosquitto, [f"{base}/gallery/#"])
    device = start_device(config_path)
    try:
        assert device.publisher.wait_connected(10)

        def command(kind: CommandKind, body: dict[str, Any]) -> dict[str, Any]:
            signed = sign_command(body, SECRET, topic=command_topic(device.topics, kind))
            collector.client.publish(command_topic(device.topics, kind), json.dumps(signed), qos=1)

            def answered(m: Any) -> bool:
                return bool(m.topic.endswith("/result")
                            and json.loads(m.payload).get("request_id") == body["request_id"])

            return next(json.loads(m.payload) for m in collector.wait_for(lambda ms: any(map(answered, ms)))
                        if answered(m))

        photo = {"image": _jpeg(group), "label": "group.jpg"}
        refused = command("gallery/enroll", {"request_id": "mq-fi-1", "person_id": "biden", "name": "Joe Biden",
                                             "photos": [photo]})
        assert refused["ok"] is False and refused["error"]["code"] == "nothing_enrolled"
        assert refused["result"]["photos"][0]["outcome"] == "several_faces"
        ok = command("gallery/enroll", {"request_id": "mq-fi-2", "person_id": "biden", "name": "Joe Biden",
                                        "photos": [{**photo, "face_index": index}]})
        assert ok["ok"] is True, ok
        assert ok["result"]["stored"] == 1 and ok["result"]["photos"][0]["detail"] == f"face {index} of 2, as asked"
        (stored,) = device.gallery.snapshot(engine.model_id).matrix
        assert distance(stored, biden, "euclidean") < 0.2
    finally:
        device.stop()
