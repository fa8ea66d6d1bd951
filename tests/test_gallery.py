"""The SQLite gallery: round trips, atomicity, model ids, tombstones and versions, outliers, fleet
records, export/import, and the folder-of-images sync (with the real Dlib embedder on sample photos).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from facegate.errors import GalleryError
from facegate.gallery import EnrollItem, OutlierPolicy, SqliteGallery, slugify, validate_person_id
from facegate.gallery.exchange import export_gallery, import_gallery
from facegate.gallery.folder_sync import FolderSync, person_for, sync_folder
from facegate.gallery.store import SCHEMA_VERSION
from facegate.matcher import Matcher
from facegate.types import METRICS, Embedding
from tests.fixtures.real_faces import EmbedImage

MODEL = "m1"


def _vec(rng: np.random.Generator, centre: np.ndarray | None = None, noise: float = 0.1) -> np.ndarray:
    base = centre if centre is not None else rng.standard_normal(64).astype(np.float32)
    return (base + noise * rng.standard_normal(64)).astype(np.float32)


def _items(rng: np.random.Generator, n: int, centre: np.ndarray | None = None, model: str = MODEL) -> list[EnrollItem]:
    c = centre if centre is not None else rng.standard_normal(64).astype(np.float32)
    return [EnrollItem(Embedding(_vec(rng, c), model), detector="mediapipe", alignment="dlib:150",
                       quality=0.8, label=f"photo{i}") for i in range(n)]


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[SqliteGallery]:
    g = SqliteGallery(tmp_path / "g.sqlite", device_id="door-1")
    yield g
    g.close()


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path))


# -- basics ---------------------------------------------------------------------------------------


def test_enroll_round_trip_and_storage_format(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(0)
    items = _items(rng, 3)
    assert gallery.revision == 0
    report = gallery.enroll("alice", "Alice Liddell", items, metadata={"door": "front", "pin": 12})
    assert report.created and report.version == 1 and len(report.stored) == 3 and not report.rejected
    assert gallery.revision == 1

    p = gallery.person("alice")
    assert (p.name, p.version, p.updated_by, p.deleted) == ("Alice Liddell", 1, "door-1", False)
    assert p.metadata == {"door": "front", "pin": 12}
    assert p.model_ids == (MODEL,) and p.embedding_count == 3
    stored = gallery.embeddings("alice")
    for item, emb in zip(items, stored, strict=True):
        np.testing.assert_array_equal(emb.vector, item.embedding.vector)  # bit-exact
        assert (emb.model_id, emb.detector, emb.alignment, emb.quality) == (MODEL, "mediapipe", "dlib:150", 0.8)
        assert emb.has_face_image is False

    with _raw(gallery.path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        blob, dim = raw.execute("SELECT vector, dim FROM embeddings ORDER BY id LIMIT 1").fetchone()
    assert dim == 64 and len(blob) == 256
    np.testing.assert_array_equal(np.frombuffer(blob, "<f4"), items[0].embedding.vector)  # float32 LE, no pickle

    ids, matrix = gallery.embeddings_matrix(MODEL)
    assert ids == ["alice"] * 3 and matrix.shape == (3, 64) and matrix.dtype == np.float32


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with SqliteGallery(tmp_path / "g.sqlite") as g:
        g.enroll("bob", "Bob", _items(rng, 2))
        rev = g.revision
    with SqliteGallery(tmp_path / "g.sqlite") as g:
        assert [p.person_id for p in g.people()] == ["bob"]
        assert g.revision == rev
    with pytest.raises(GalleryError, match="closed"):
        g.people()


@pytest.mark.parametrize("bad", ["", "Alice", "al ice", "a/b", "a+b", "a#", "-start", "_x", "é", "a" * 65, 7, None])
def test_person_id_validation(gallery: SqliteGallery, bad: object) -> None:
    with pytest.raises(GalleryError, match="invalid person id"):
        gallery.enroll(bad, "x", _items(np.random.default_rng(0), 1))  # type: ignore[arg-type]
    assert gallery.people() == [] and gallery.revision == 0


def test_ids_names_and_slugs() -> None:
    assert validate_person_id("a") == "a" and validate_person_id("a" * 64) == "a" * 64
    assert validate_person_id("door_2-b") == "door_2-b"
    assert slugify("Angelina Jolie") == "angelina-jolie"
    assert slugify("José  Ñúñez") == "jose-nunez"
    assert slugify("lin_manuel_miranda") == "lin_manuel_miranda"
    cjk = slugify("王小明")
    assert validate_person_id(cjk) == cjk and cjk.startswith("p-")
    assert slugify("x" * 100) == "x" * 64


def test_name_validation(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(0)
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(GalleryError, match="invalid person name"):
            gallery.enroll("ok", bad, _items(rng, 1))
    report = gallery.enroll("ok", "  Zoë O'Brien (night shift) ", _items(rng, 1))
    assert report.name == "Zoë O'Brien (night shift)"


def test_bad_vectors_refused(gallery: SqliteGallery) -> None:
    for vector in (np.array([1.0, np.nan]), np.zeros(8), np.ones((2, 2)), np.array([np.inf, 1.0])):
        with pytest.raises(GalleryError):
            gallery.enroll("x", "X", [EnrollItem(Embedding(vector.astype(np.float32), MODEL))])
    with pytest.raises(GalleryError, match="no embeddings"):
        gallery.enroll("x", "X", [])
    assert gallery.people() == []


# -- atomicity ------------------------------------------------------------------------------------


def test_enrolment_is_all_or_nothing(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(2)
    gallery.enroll("carol", "Carol", _items(rng, 2))
    before = (gallery.revision, gallery.person("carol"), [e.id for e in gallery.embeddings("carol")])

    good = _items(rng, 3)
    bad = EnrollItem(Embedding(np.array([np.nan] * 64, np.float32), MODEL))
    with pytest.raises(GalleryError):
        gallery.enroll("dave", "Dave", [*good[:2], bad, good[2]])
    assert [p.person_id for p in gallery.people()] == ["carol"]

    # a failure inside the transaction, after rows were written, rolls them back
    def explode(op: str) -> None:
        raise RuntimeError(f"disk gone during {op}")

    gallery.before_commit = explode
    with pytest.raises(RuntimeError, match="disk gone during enroll"):
        gallery.enroll("dave", "Dave", good)
    with pytest.raises(RuntimeError):
        gallery.enroll("carol", "Carol", _items(rng, 2), replace=True)
    with pytest.raises(RuntimeError):
        gallery.remove("carol")
    gallery.before_commit = None
    assert (gallery.revision, gallery.person("carol"), [e.id for e in gallery.embeddings("carol")]) == before
    with _raw(gallery.path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 1
        assert raw.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2
    # and the gallery is still writable
    assert gallery.enroll("dave", "Dave", good).created


def test_several_operations_in_one_transaction(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(3)
    with gallery.transaction("batch") as txn:
        txn.enroll("a", "A", _items(rng, 1))
        txn.enroll("b", "B", _items(rng, 1))
        txn.rename("a", "Anne")
    assert gallery.revision == 1  # one transaction, one revision
    assert [(p.person_id, p.name) for p in gallery.people()] == [("a", "Anne"), ("b", "B")]
    with pytest.raises(GalleryError, match="unknown person 'zz'"), gallery.transaction("batch") as txn:
        txn.enroll("c", "C", _items(rng, 1))
        txn.remove("zz")
    assert [p.person_id for p in gallery.people()] == ["a", "b"]


# -- model ids ------------------------------------------------------------------------------------


def test_model_id_mixing_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    g = SqliteGallery(tmp_path / "g.sqlite")
    mixed = [*_items(rng, 1, model="m1"), *_items(rng, 1, model="m2")]
    with pytest.raises(GalleryError, match="mixes model ids"):
        g.enroll("eve", "Eve", mixed)
    g.enroll("eve", "Eve", _items(rng, 2, model="m1"))
    with pytest.raises(GalleryError, match="refusing to mix"):
        g.enroll("eve", "Eve", _items(rng, 1, model="m2"))
    # another person may use another model; every match uses one
    g.enroll("fay", "Fay", _items(rng, 1, model="m2"))
    assert g.model_ids() == ["m1", "m2"]
    with pytest.raises(GalleryError, match="say which model_id"):
        g.snapshot()
    assert g.snapshot("m2").person_ids == ("fay",)
    assert Matcher(g, "m1", threshold=1.0).match(g.embeddings("eve")[0].embedding()).person_id == "eve"
    # re-enrolment with the new model replaces the old vectors
    report = g.enroll("eve", "Eve", _items(rng, 1, model="m2"), replace=True)
    assert report.replaced == 2 and g.person("eve").model_ids == ("m2",)
    # one model, one dimension
    with pytest.raises(GalleryError, match="64-d embeddings"):
        g.enroll("gus", "Gus", [EnrollItem(Embedding(np.ones(32, np.float32), "m2"))])
    g.close()

    bound = SqliteGallery(tmp_path / "bound.sqlite", model_id="m1")
    with pytest.raises(GalleryError, match="holds model 'm1'"):
        bound.enroll("eve", "Eve", _items(rng, 1, model="m2"))
    with pytest.raises(GalleryError, match="bound to model"):
        bound.snapshot("m2")
    bound.close()


# -- tombstones, versions, rename -------------------------------------------------------------------


def test_remove_is_a_tombstone_and_versions_increase(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(5)
    gallery.enroll("hal", "Hal", _items(rng, 2))
    assert gallery.rename("hal", "Hal 9000") == 2
    assert gallery.set_metadata("hal", {"floor": 3}) == 3
    assert gallery.remove("hal") == 4
    assert gallery.people() == []
    with pytest.raises(GalleryError, match="unknown person 'hal'"):
        gallery.person("hal")
    tomb = gallery.person("hal", include_deleted=True)
    assert tomb.deleted and tomb.version == 4 and tomb.embedding_count == 0
    assert gallery.snapshot(MODEL).size == 0
    ops: list[Callable[[], object]] = [
        lambda: gallery.remove("hal"), lambda: gallery.rename("hal", "x"), lambda: gallery.remove("nobody")]
    for op in ops:
        with pytest.raises(GalleryError, match="unknown person"):
            op()
    revived = gallery.enroll("hal", "Hal", _items(rng, 1))
    assert revived.created and revived.version == 5
    assert gallery.person("hal").metadata == {}  # the tombstone dropped the old metadata


def test_face_images_only_when_opted_in(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    item = EnrollItem(Embedding(_vec(rng), MODEL), face_image=b"\xff\xd8jpeg bytes")
    with SqliteGallery(tmp_path / "plain.sqlite") as g:
        eid = g.enroll("ivy", "Ivy", [item]).stored[0].embedding_id
        assert g.face_image(eid) is None and not g.embeddings("ivy")[0].has_face_image
    with SqliteGallery(tmp_path / "images.sqlite", store_face_images=True) as g:
        eid = g.enroll("ivy", "Ivy", [item]).stored[0].embedding_id
        assert g.face_image(eid) == b"\xff\xd8jpeg bytes"


# -- outliers and duplicates ---------------------------------------------------------------------------


def test_outlier_photo_reported_and_not_stored(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(7)
    centre = rng.standard_normal(64).astype(np.float32)
    items = _items(rng, 4, centre)
    stranger = EnrollItem(Embedding(rng.standard_normal(64).astype(np.float32), MODEL), label="wrong.jpg")
    policy = OutlierPolicy(metric="cosine", threshold=0.2)
    report = gallery.enroll("jo", "Jo", [items[0], items[1], stranger, items[2], items[3]], outliers=policy)
    assert [s.index for s in report.stored] == [0, 1, 3, 4]
    assert len(report.rejected) == 1
    rej = report.rejected[0]
    assert (rej.index, rej.reason, rej.label) == (2, "outlier", "wrong.jpg")
    assert rej.distance is not None and rej.distance > 0.2 and "exceeds the threshold" in rej.detail
    assert gallery.person("jo").embedding_count == 4

    # a later photo is checked against the person's existing embeddings
    later = gallery.enroll("jo", "Jo", [EnrollItem(Embedding(-centre, MODEL))], outliers=policy)
    assert later.stored == () and later.rejected[0].reason == "outlier"
    assert later.version == report.version  # nothing changed, nothing written
    ok = gallery.enroll("jo", "Jo", [EnrollItem(Embedding(_vec(rng, centre), MODEL))], outliers=policy)
    assert len(ok.stored) == 1 and ok.version == report.version + 1


def test_relative_outlier_test_without_threshold(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(8)
    centre = rng.standard_normal(64).astype(np.float32)
    items = _items(rng, 6, centre)
    odd = EnrollItem(Embedding(_vec(rng, centre, noise=1.5), MODEL), label="blurry")
    report = gallery.enroll("kim", "Kim", [*items, odd], outliers=OutlierPolicy(metric="euclidean"))
    assert [r.label for r in report.rejected] == ["blurry"]
    assert "robust z" in report.rejected[0].detail


def test_two_disagreeing_photos_keep_the_better_one(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(9)
    a = EnrollItem(Embedding(_vec(rng), MODEL), quality=0.3, label="dark")
    b = EnrollItem(Embedding(_vec(rng), MODEL), quality=0.9, label="sharp")
    report = gallery.enroll("lee", "Lee", [a, b], outliers=OutlierPolicy(threshold=0.3))
    assert [s.label for s in report.stored] == ["sharp"]
    assert [r.label for r in report.rejected] == ["dark"]
    # disabled policy stores both
    report = gallery.enroll("lee2", "Lee", [a, b], outliers=OutlierPolicy.disabled())
    assert len(report.stored) == 2


def test_duplicate_photos_are_not_stored_twice(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(10)
    centre = rng.standard_normal(64).astype(np.float32)
    sha = "ab" * 32
    first = EnrollItem(Embedding(_vec(rng, centre), MODEL), source_sha256=sha, label="a.jpg")
    report = gallery.enroll("max", "Max", [first, first])
    assert len(report.stored) == 1 and report.rejected[0].reason == "duplicate"
    again = gallery.enroll("max", "Max", [first])
    assert again.stored == () and again.rejected[0].reason == "duplicate"


# -- fleet records --------------------------------------------------------------------------------------


def test_record_round_trip_and_conflict_rule(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    a = SqliteGallery(tmp_path / "a.sqlite", device_id="door-a")
    b = SqliteGallery(tmp_path / "b.sqlite", device_id="door-b")
    a.enroll("nia", "Nia", _items(rng, 2), metadata={"badge": 7})
    rec = a.record("nia")
    assert (rec.version, rec.updated_by, rec.deleted, len(rec.embeddings)) == (1, "door-a", False, 2)

    out = b.apply_record(rec.model_dump_json())  # as it arrives over MQTT
    assert out.applied and out.stored == 2
    assert b.record("nia") == rec  # identical record, vectors bit-exact, updated_by preserved
    assert b.apply_record(rec).reason == "same"

    # b renames (v2 by door-b); a's stale v1 no longer applies to b, b's v2 applies to a
    b.rename("nia", "Nia B.")
    assert b.apply_record(rec).reason == "stale"
    assert a.apply_record(b.record("nia")).applied and a.person("nia").name == "Nia B."

    # both bump to v3 concurrently: the higher device id wins everywhere
    a.rename("nia", "from a")
    b.rename("nia", "from b")
    ra, rb = a.record("nia"), b.record("nia")
    assert ra.version == rb.version == 3
    assert a.apply_record(rb).applied and not b.apply_record(ra).applied
    assert a.person("nia").name == b.person("nia").name == "from b"

    # a delete propagates as a tombstone and beats the older enrolment
    a.remove("nia")
    tomb = a.record("nia")
    assert tomb.deleted and tomb.embeddings == [] and tomb.version == 4
    assert b.apply_record(tomb).applied
    assert b.people() == [] and b.person("nia", include_deleted=True).deleted
    assert not b.apply_record(rb).applied  # the old record does not resurrect her
    a.close()
    b.close()


def test_devices_converge_whatever_the_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    records = []
    src = SqliteGallery(tmp_path / "src.sqlite", device_id="d1")
    src.enroll("oz", "Oz", _items(rng, 1))
    records.append(src.record("oz"))
    src.enroll("oz", "Oz", _items(rng, 1), replace=True)
    records.append(src.record("oz"))
    src.enroll("pam", "Pam", _items(rng, 2))
    records.append(src.record("pam"))
    src.remove("pam")
    records.append(src.record("pam"))
    final = {r.person_id: r for r in src.records()}
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(records))
        with SqliteGallery(tmp_path / f"dst{seed}.sqlite", device_id="d2") as dst:
            for i in order:
                dst.apply_record(records[i])
            assert {r.person_id: r for r in dst.records()} == final
    src.close()


def test_foreign_model_embeddings_ignored_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(13)
    with SqliteGallery(tmp_path / "a.sqlite") as a, SqliteGallery(tmp_path / "b.sqlite", model_id="other") as b:
        a.enroll("quin", "Quin", _items(rng, 2))
        with caplog.at_level(logging.WARNING, logger="facegate.gallery.store"):
            out = b.apply_record(a.record("quin"))
        assert out.applied and out.ignored_embeddings == 2 and out.stored == 0
        assert "ignoring them" in caplog.text
        assert b.person("quin").embedding_count == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(person_id="Bad/Id"),
        lambda r: r.update(version=-1),
        lambda r: r.update(unknown_field=1),
        lambda r: r.update(deleted=True),  # tombstone with embeddings
        lambda r: r["embeddings"][0].update(dim=65),
        lambda r: r["embeddings"][0].update(vector="not base64!"),
        lambda r: r["embeddings"][0].update(vector=[float("nan")] * 64),
        lambda r: r["embeddings"][1].update(model_id="m2"),
        lambda r: r.update(name=""),
        lambda r: r.update(metadata={"x": "y" * 20000}),
    ],
)
def test_invalid_records_refused(
    gallery: SqliteGallery, tmp_path: Path, mutate: Callable[[dict[str, Any]], None]
) -> None:
    rng = np.random.default_rng(14)
    with SqliteGallery(tmp_path / "src.sqlite") as src:
        src.enroll("rae", "Rae", _items(rng, 2))
        data = json.loads(src.record("rae").model_dump_json())
    mutate(data)
    with pytest.raises(GalleryError, match="invalid person record"):
        gallery.apply_record(data)
    with pytest.raises(GalleryError):
        gallery.apply_record(json.dumps(data))
    assert gallery.people(include_deleted=True) == [] and gallery.revision == 0


# -- export / import --------------------------------------------------------------------------------------


def _populate(g: SqliteGallery, rng: np.random.Generator, people: int = 30) -> None:
    for i in range(people):
        g.enroll(f"person-{i:02d}", f"Person {i}", _items(rng, int(rng.integers(1, 5))), metadata={"i": i})
    g.remove("person-03")
    g.rename("person-04", "Renamed")


@pytest.mark.parametrize("vectors", ["base64", "list"])
def test_export_import_gives_identical_matches(tmp_path: Path, vectors: Literal["base64", "list"]) -> None:
    rng = np.random.default_rng(15)
    src = SqliteGallery(tmp_path / "src.sqlite", device_id="hub")
    _populate(src, rng)
    path = tmp_path / "backup.json"
    assert export_gallery(src, path, vectors=vectors) == 30
    dst = SqliteGallery(tmp_path / "dst.sqlite", device_id="other")
    report = import_gallery(dst, path)
    assert (report.applied, report.skipped) == (30, 0)
    assert dst.records() == src.records()
    assert dst.person("person-03", include_deleted=True).deleted
    probes = [Embedding(_vec(rng, row, noise=0.3), MODEL) for row in src.snapshot(MODEL).matrix[::3]]
    probes += [Embedding(rng.standard_normal(64).astype(np.float32), MODEL) for _ in range(10)]
    for metric in METRICS:
        for aggregate in ("min", "mean"):
            m1 = Matcher(src, MODEL, metric=metric, threshold=0.5, margin=0.01, aggregate=aggregate)
            m2 = Matcher(dst, MODEL, metric=metric, threshold=0.5, margin=0.01, aggregate=aggregate)
            for probe in probes:
                assert m1.match(probe) == m2.match(probe)
    # importing again changes nothing (merge by version)
    again = import_gallery(dst, path)
    assert again.applied == 0 and again.skipped == 30
    src.close()
    dst.close()


def test_export_to_file_objects_and_invalid_imports(tmp_path: Path, gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(16)
    with SqliteGallery(tmp_path / "src.sqlite") as src:
        _populate(src, rng, people=5)
        buffer = io.StringIO()
        export_gallery(src, buffer, include_deleted=False)
    document = json.loads(buffer.getvalue())
    assert document["format"] == "facegate-gallery" and len(document["people"]) == 4
    gallery.enroll("keep", "Keep", _items(rng, 1))
    before = gallery.records()
    broken = [
        b"",
        b"not json",
        b'{"format": "pickle", "schema_version": 1, "exported_at": 0, "exported_by": "x", "people": []}',
        json.dumps({**document, "people": [*document["people"], document["people"][0]]}).encode(),
        json.dumps({**document, "people": [{**document["people"][0], "version": "high"}]}).encode(),
    ]
    for data in broken:
        with pytest.raises(GalleryError):
            import_gallery(gallery, io.BytesIO(data))
    assert gallery.records() == before  # nothing half-imported
    assert import_gallery(gallery, io.BytesIO(buffer.getvalue().encode())).applied == 4
    with pytest.raises(GalleryError, match="cannot read"):
        import_gallery(gallery, tmp_path / "missing.json")


def test_not_a_gallery_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(GalleryError, match=r"junk\.sqlite"):
        SqliteGallery(junk)
    other = tmp_path / "other.sqlite"
    with _raw(other) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(GalleryError, match="not a facegate gallery"):
        SqliteGallery(other)
    newer = tmp_path / "newer.sqlite"
    SqliteGallery(newer).close()
    with _raw(newer) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(GalleryError, match="newer"):
        SqliteGallery(newer)


# -- folder sync ----------------------------------------------------------------------------------------


def test_person_names_from_paths() -> None:
    from pathlib import PurePosixPath

    assert person_for(PurePosixPath("Angelina Jolie/1.jpg")) == ("angelina-jolie", "Angelina Jolie")
    assert person_for(PurePosixPath("bob/sub/x.png")) == ("bob", "bob")
    assert person_for(PurePosixPath("alice_2.jpg")) == ("alice", "alice")
    assert person_for(PurePosixPath("obama2.jpg")) == ("obama2", "obama2")


class _Counting:
    def __init__(self, inner: EmbedImage) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __call__(self, path: Path) -> Sequence[tuple[Embedding, float]]:
        self.calls.append(path.name)
        return self.inner(path)


def test_folder_sync_with_real_embedder(tmp_path: Path, samples_dir: Path, embed_sample_image: EmbedImage) -> None:
    folder = tmp_path / "people"
    (folder / "Barack Obama").mkdir(parents=True)
    shutil.copy(samples_dir / "obama.jpg", folder / "Barack Obama" / "a.jpg")
    shutil.copy(samples_dir / "obama2.jpg", folder / "Barack Obama" / "b.jpg")
    shutil.copy(samples_dir / "biden.jpg", folder / "biden_1.jpg")  # a flat file is its own person
    (folder / "Barack Obama" / "truncated.jpg").write_bytes((samples_dir / "obama3.jpg").read_bytes()[:2000])
    (folder / "Barack Obama" / "notes.jpg").write_text("not an image")
    (folder / "Barack Obama" / "readme.txt").write_text("ignored: not an image suffix")
    (folder / "coffee.png").write_bytes(_png_without_face())

    embed = _Counting(embed_sample_image)
    from facegate.embedders.registry import build_embedder

    thresholds = build_embedder("Dlib").thresholds
    policy = OutlierPolicy.for_model(thresholds, "euclidean")
    progress: list[tuple[int, int, str]] = []
    sync = FolderSync(folder, embed, model_id="dlib_resnet_v1", outliers=policy,
                      progress=lambda d, t, p: progress.append((d, t, p)))
    report = sync.sync()
    assert report.db_path == folder / ".facegate-dlib_resnet_v1.sqlite" and report.db_path.is_file()
    assert (report.added, report.people_added, report.removed) == (3, 2, 0)
    problems = {i.path: i for i in report.issues}
    assert set(problems) == {"Barack Obama/truncated.jpg", "Barack Obama/notes.jpg", "coffee.png"}
    assert all(i.status == "error" for i in problems.values())
    assert "no face" in problems["coffee.png"].detail.lower()
    assert progress[-1][:2] == (6, 6)
    g = sync.gallery
    assert [(p.person_id, p.name, p.embedding_count) for p in g.people()] == [
        ("barack-obama", "Barack Obama", 2), ("biden", "biden", 1)]

    m = Matcher(g, "dlib_resnet_v1", metric="euclidean", threshold=thresholds)
    obama3 = embed_sample_image(samples_dir / "obama3.jpg")[0][0]
    assert m.match(obama3).person_id == "barack-obama"

    # nothing changed: nothing re-embedded, bad files are not retried
    embed.calls.clear()
    again = sync.sync()
    assert embed.calls == [] and again.unchanged == 6 and again.added == again.removed == 0
    assert again.issues == ()
    rev = g.revision
    # touching a file (same content, new mtime) is not a change either
    os.utime(folder / "Barack Obama" / "a.jpg", ns=(1, 1))
    assert sync.sync().unchanged == 6 and embed.calls == [] and g.revision == rev

    # change a photo's content, add one, remove one
    shutil.copy(samples_dir / "obama3.jpg", folder / "Barack Obama" / "b.jpg")
    shutil.copy(samples_dir / "obama2.jpg", folder / "Barack Obama" / "c.jpg")
    (folder / "Barack Obama" / "notes.jpg").unlink()
    report = sync.sync()
    assert sorted(embed.calls) == ["b.jpg", "c.jpg"]
    assert (report.added, report.changed, report.removed) == (1, 1, 1)
    shas = {e.source_path: e.source_sha256 for e in g.embeddings("barack-obama")}
    assert set(shas) == {"Barack Obama/a.jpg", "Barack Obama/b.jpg", "Barack Obama/c.jpg"}

    # Biden's photo placed in Obama's folder is an outlier: reported, not stored
    shutil.copy(samples_dir / "biden.jpg", folder / "Barack Obama" / "d.jpg")
    report = sync.sync()
    assert [(i.path, i.status) for i in report.issues] == [("Barack Obama/d.jpg", "outlier")]
    assert g.person("barack-obama").embedding_count == 3

    # removing a person's last photo deletes the person
    (folder / "biden_1.jpg").unlink()
    report = sync.sync()
    assert report.people_removed == 1 and [p.person_id for p in g.people()] == ["barack-obama"]
    assert m.match(embed_sample_image(samples_dir / "biden.jpg")[0][0]).person_id is None
    sync.close()

    # one-shot helper with an explicit database path elsewhere (read-only photo folders)
    other = sync_folder(folder, embed_sample_image, model_id="dlib_resnet_v1", db_path=tmp_path / "x.sqlite")
    assert other.db_path == tmp_path / "x.sqlite" and other.people_added == 1


def test_folder_sync_survives_a_crashing_embedder(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    (folder / "ann").mkdir(parents=True)
    (folder / "ann" / "1.jpg").write_bytes(b"x")
    (folder / "ann" / "2.jpg").write_bytes(b"y")
    rng = np.random.default_rng(17)
    vec = rng.standard_normal(16).astype(np.float32)

    def embed(path: Path) -> list[tuple[Embedding, float]]:
        if path.name == "1.jpg":
            raise MemoryError("decoder exploded")
        return [(Embedding(vec, "m"), 0.5), (Embedding(-vec, "m"), 0.4)]

    report = sync_folder(folder, embed, model_id="m")
    assert report.added == 1
    assert [(i.path, i.status) for i in report.issues] == [("ann/1.jpg", "error")]
    assert "MemoryError" in report.issues[0].detail
    with SqliteGallery(report.db_path) as g:
        np.testing.assert_array_equal(g.embeddings("ann")[0].vector, vec)  # the first (largest) face
        assert g.file_states()["ann/2.jpg"].detail == "2 faces; enrolled the first"
    with pytest.raises(GalleryError, match="does not exist"):
        FolderSync(tmp_path / "missing", embed, model_id="m")


def _png_without_face() -> bytes:
    import cv2

    image = np.full((64, 64, 3), 128, np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return bytes(data)


def test_reads_inside_a_write_transaction_see_its_changes(gallery: SqliteGallery) -> None:
    rng = np.random.default_rng(18)
    with gallery.transaction("batch") as txn:
        txn.enroll("una", "Una", _items(rng, 2))
        assert [p.person_id for p in gallery.people()] == ["una"]
        assert gallery.snapshot(MODEL).size == 2
    assert gallery.revision == 1
