"""Install footprint: the wheel leaves the reference variants and the non-default families (mtcnn,
mediapipe_full, facemesh) out, a missing one says how to build it wherever it is asked for, an installed
facegate stays within issue 12's 20 MB, and ``facegate doctor`` reports installed variants and disk usage
measured as ``du`` does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from facegate.commands.doctor import variant_rows
from facegate.commands.models import default_build_dir
from facegate.embedders.registry import EMBEDDERS
from facegate.errors import ModelNotInstalledError
from facegate.footprint import disk_usage, measure, normalise
from facegate.inference.manifest import ModelZoo, bundled_models_dir
from facegate.inference.reference_models import ON_DEMAND_MODELS
from tests.conftest import REPO_ROOT, SAMPLES_DIR, tensorflow_or_skip
from tests.fixtures.images import read_bgr

#: facegate's unpacked share of the wheel is 15.3 MB (models 12.4 MB, code 1.6 MB, sample photos 1.35 MB):
#: the bound leaves 0.6 MB for code and catches a large model slipping back in (the smaller ones are caught
#: by the exact file set above)
WHEEL_UNPACKED_LIMIT = 16_000_000
#: issue 12: facegate's own installed size, bytecode included, as ``du`` counts it (measured 19.02 MB)
INSTALLED_LIMIT = 20_000_000


def _opencv_files() -> set[str]:
    """Model files of the checkout that are OpenCV's own ``cv2/data`` files (the wheel leaves them out)."""
    zoo = ModelZoo((REPO_ROOT / "models",))
    return {m.file for m in zoo.all() if m.source.path.startswith("cv2/data/")}


def test_pyproject_excludes_exactly_the_reference_models_and_opencvs_files() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    excluded = set(re.findall(r'"models/([A-Za-z0-9_]+)\.\*"', pyproject))
    assert excluded == {ref.name for ref in ON_DEMAND_MODELS}
    assert set(re.findall(r'"models/([A-Za-z0-9_]+\.xml)"', pyproject)) == _opencv_files()
    assert _opencv_files() == {"haar_frontalface_default.xml", "haar_eye.xml"}
    for ref in ON_DEMAND_MODELS:  # the checkout keeps them for the tests and the converters
        assert (REPO_ROOT / "models" / f"{ref.name}.yaml").is_file()
        assert (REPO_ROOT / "models" / f"{ref.name}.tflite").is_file()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO_ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = out.glob("facegate-*.whl")
    return found


@dataclass(frozen=True)
class Installed:
    """The wheel installed into a fresh venv, run with an empty user models directory."""

    venv: Path
    package: Path  # site-packages/facegate
    env: dict[str, str]
    cwd: Path

    def facegate(self, *args: str, models_dir: Path | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = self.env if models_dir is None else {**self.env, "FACEGATE_MODELS_DIR": str(models_dir)}
        return subprocess.run([str(self.venv / "bin" / "facegate"), *args], capture_output=True, text=True,
                              env=env, cwd=self.cwd, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           str(wheel)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the runtime dependencies (and the convert extra) come from this interpreter's environment: plain path
    # lines, appended after the venv's own site-packages, so its .pth files (an editable facegate) stay unread
    paths = sysconfig.get_paths()
    (site / "zz_test_dependencies.pth").write_text(f"{paths['purelib']}\n{paths['platlib']}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STATE_DIRECTORY")}
    env["FACEGATE_MODELS_DIR"] = str(tmp_path_factory.mktemp("empty-user-models"))
    cwd = tmp_path_factory.mktemp("cwd")  # not the checkout: nothing of it may be imported
    where = subprocess.run([str(python), "-c", "import facegate; print(facegate.__file__)"], capture_output=True,
                           text=True, env=env, cwd=cwd, check=True).stdout.strip()
    assert Path(where).parent == site / "facegate"
    return Installed(venv, site / "facegate", env, cwd)


@pytest.mark.slow
def test_wheel_leaves_out_the_build_on_demand_models_and_keeps_every_other_model(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = archive.infolist()
    shipped = {Path(m.filename).name for m in members if m.filename.startswith("facegate/models/")}
    reference = {f"{ref.name}.{ext}" for ref in ON_DEMAND_MODELS for ext in ("yaml", "tflite")}
    in_repo = {p.name for p in (REPO_ROOT / "models").iterdir() if p.is_file()}
    assert shipped == in_repo - reference - _opencv_files()
    unpacked = sum(m.file_size for m in members if m.filename.startswith("facegate/"))
    assert unpacked <= WHEEL_UNPACKED_LIMIT, f"facegate unpacks to {unpacked / 1e6:.1f} MB"


@pytest.mark.slow
def test_installed_facegate_is_within_issue_12s_20_mb(installed: Installed) -> None:
    size = disk_usage([installed.package])
    assert any(installed.package.rglob("*.pyc")), "pip compiles the bytecode, which counts"
    assert size <= INSTALLED_LIMIT, f"facegate takes {size / 1e6:.2f} MB installed"


@pytest.mark.slow
def test_installed_facegate_runs_the_defaults_and_names_the_build_command_for_the_rest(installed: Installed) -> None:
    photo = str(SAMPLES_DIR / "obama.jpg")
    done = installed.facegate("detect", photo)
    assert done.returncode == 0 and "1 face(s)" in done.stdout, done.stderr[-2000:]
    for backend, converter in (("mtcnn", "mtcnn"), ("mediapipe_full", "blazeface")):
        done = installed.facegate("detect", "-d", backend, photo)
        assert done.returncode == 4, done.stdout
        assert f"no detector model '{backend}' is installed" in done.stderr
        assert f"facegate models build --only {converter}" in done.stderr
    config = installed.cwd / "facegate.yaml"
    config.write_text(f"state_dir: {installed.cwd}\nmqtt: {{enabled: false}}\nliveness: {{mode: blink}}\n")
    done = installed.facegate("check-config", "--no-overlay", str(config))
    assert done.returncode == 2 and "liveness.mode: liveness 'blink' runs FaceMesh" in done.stderr
    assert "facegate models build --only facemesh" in done.stderr
    done = installed.facegate("run", "--no-overlay", "-c", str(config))
    assert done.returncode == 4 and "facegate models build --only facemesh" in done.stderr
    done = installed.facegate("doctor")
    assert done.returncode == 0, done.stdout[-3000:]
    rows = {line.split()[3]: line for line in done.stdout.splitlines() if line.startswith("OK      variants")}
    for family in ("mtcnn", "mediapipe_full", "facemesh"):
        assert "not installed, buildable" in rows[family]
    assert "installed: fp16 (default); int8 not installed, buildable" in rows["mediapipe"]


@pytest.mark.slow
@pytest.mark.convert
def test_models_build_in_an_installed_facegate_rebuilds_the_left_out_families(
    installed: Installed, tmp_path: Path
) -> None:
    """The float16 rebuild of MTCNN comes out byte for byte as the checkout's from the installed package
    alone (its sample photos, the convert extra). FaceMesh's rebuild goes the same way (checked by hand,
    byte-identical too) but takes a minute, which CI's 15 minutes cannot spare; BlazeFace full range's
    file is the source package's unchanged."""
    tensorflow_or_skip()
    built = tmp_path / "user-models"
    done = installed.facegate("models", "build", "--only", "mtcnn", models_dir=built, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("mtcnn_pnet_fp16", "mtcnn_rnet_fp16", "mtcnn_onet_fp16"):
        assert (built / f"{name}.tflite").read_bytes() == (REPO_ROOT / "models" / f"{name}.tflite").read_bytes()
    done = installed.facegate("detect", "-d", "mtcnn", str(SAMPLES_DIR / "obama.jpg"), models_dir=built)
    assert done.returncode == 0 and "face(s)" in done.stdout, done.stderr[-2000:]


def _zoo_without_references(tmp_path: Path) -> ModelZoo:
    """A models directory as the wheel installs it: the bundled one minus the build-on-demand models."""
    reference = {ref.name for ref in ON_DEMAND_MODELS}
    for path in bundled_models_dir().iterdir():
        if path.is_file() and path.name.split(".")[0] not in reference and path.name not in _opencv_files():
            (tmp_path / path.name).symlink_to(path)
    return ModelZoo((tmp_path,))


def test_without_its_own_cascades_the_opencv_detector_uses_opencvs_identical_copy(tmp_path: Path) -> None:
    from facegate.detectors.registry import build_detector
    from facegate.inference.manifest import locate_file, opencv_data_dirs, verify_file

    if not any((d / "haarcascade_frontalface_default.xml").is_file() for d in opencv_data_dirs()):
        pytest.skip("this OpenCV has no Haar cascade files (neither cv2.data nor opencv-data)")
    zoo = _zoo_without_references(tmp_path)
    face = zoo.family("detector", "opencv")
    assert not face.model_path.exists()
    path = verify_file(face)  # size and sha256 of OpenCV's file are the manifest's
    assert path.name == "haarcascade_frontalface_default.xml" and path.parent in opencv_data_dirs()
    assert locate_file(zoo.get("haar_eye")).name == "haarcascade_eye.xml"
    found = build_detector("opencv", zoo=zoo).detect(read_bgr(SAMPLES_DIR / "obama.jpg"))
    assert len(found) == 1


def test_a_cascade_whose_opencv_copy_differs_is_not_used_and_the_error_says_what_to_do(tmp_path: Path) -> None:
    from facegate.inference.manifest import load_manifest, verify_file

    text = (bundled_models_dir() / "haar_eye.yaml").read_text()
    sha = load_manifest(bundled_models_dir() / "haar_eye.yaml").sha256
    (tmp_path / "haar_eye.yaml").write_text(text.replace(sha, "ab" * 32))
    altered = load_manifest(tmp_path / "haar_eye.yaml")
    with pytest.raises(ModelNotInstalledError, match=r"haar_eye\.xml of manifest haar_eye is missing; OpenCV's "
                       r"haarcascade_eye\.xml with the same sha256 is not in .*apt install opencv-data.*"
                       r"facegate models build --only haar"):
        verify_file(altered)


def test_a_missing_reference_variant_says_how_to_build_it(tmp_path: Path) -> None:
    zoo = _zoo_without_references(tmp_path)
    with pytest.raises(ModelNotInstalledError, match=r"facegate models build --only age_gender"):
        zoo.family("age", "dlib", "fp32")
    with pytest.raises(ModelNotInstalledError, match=r"Dlib \(fp32\) is not installed: dlib_resnet_fp32 .*"
                                                     r"facegate models build --only dlib_resnet"):
        EMBEDDERS.get("Dlib")(variant="fp32", zoo=zoo)
    assert EMBEDDERS.get("Dlib")(zoo=zoo).name == "Dlib"  # the default int8 variant is there
    rows = {row[1]: row[2] for row in variant_rows(zoo)}
    assert rows["variants embedder Dlib"].startswith(
        "installed: int8 (default); fp32 not installed, buildable: dlib_resnet_fp32")
    assert rows["variants detector mediapipe"].startswith(
        "installed: fp16 (default); int8 not installed, buildable: blazeface_short_int8 (0.18 MB)")
    assert "facegate models build --only blazeface" in rows["variants detector mediapipe"]
    assert "facegate models build --only mmod" in rows["variants detector dlib"]
    with pytest.raises(ModelNotInstalledError, match=r"facegate models build --only blazeface"):
        zoo.family("detector", "mediapipe_full", "int8")


def test_a_checkout_lists_the_reference_variants_as_installed() -> None:
    rows = {row[1]: row[2] for row in variant_rows(ModelZoo((bundled_models_dir(),)))}
    assert rows["variants embedder Dlib"] == "installed: fp32, int8 (default)"
    assert default_build_dir() == REPO_ROOT / "models"


def test_disk_usage_is_what_du_reports(tmp_path: Path) -> None:
    if shutil.which("du") is None:
        pytest.skip("no du on this machine")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big.bin").write_bytes(b"x" * 300_001)
    (tmp_path / "small.txt").write_text("hello")
    (tmp_path / "a" / "hard").hardlink_to(tmp_path / "small.txt")  # counted once, as du does
    du = subprocess.run(["du", "-s", "-B1", str(tmp_path)], capture_output=True, text=True, check=True)
    assert disk_usage([tmp_path]) == int(du.stdout.split()[0])


def test_footprint_follows_the_runtime_requirements_only() -> None:
    fp = measure()
    names = {normalise(d.name) for d in fp.dependencies}
    assert {"numpy", "pyyaml", "pydantic", "pydantic-core", "paho-mqtt"} <= names
    assert "opencv-python-headless" in names or any(d.note and "cv2" in d.note for d in fp.dependencies)
    assert not names & {"pytest", "tensorflow-cpu", "tensorflow", "mypy", "facegate"}  # extras and itself
    assert 0 < fp.models_bytes <= fp.facegate.bytes
    assert fp.total_bytes == fp.facegate.bytes + sum(d.bytes for d in fp.dependencies)
    assert all(d.bytes > 0 for d in fp.dependencies)
