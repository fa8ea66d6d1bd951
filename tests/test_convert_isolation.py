"""Native crashes in converter checks: the converter avoids the known one, and the test run survives any.

* The reproduction of issue 12 (BlazeFace short graph rebuilt by ``build_tf_function`` and called once
  on a random input, which segfaults inside TensorFlow's oneDNN kernels on AVX-512 BF16 CPUs) runs in a
  child process whose environment lacks ``TF_ENABLE_ONEDNN_OPTS``, importing TensorFlow only through
  the converter, and must exit 0.
* A ``convert``-marked test that kills its process is reported as that test's failure, naming the
  signal, and the tests after it still run (``tests/fixtures/isolation.py``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

REPRODUCTION = textwrap.dedent("""
    import os
    import numpy as np
    from facegate.convert import blazeface as conv
    from facegate.convert.sources import fetch
    from facegate.convert.tflite_rebuild import build_tf_function, read_graph

    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    original = fetch(conv.source_file(conv.SHORT), sha256=conv.SHORT.source_sha256)
    function = build_tf_function(read_graph(original))
    outputs = function(np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32))
    print("switch", os.environ["TF_ENABLE_ONEDNN_OPTS"], "shapes", [tuple(np.asarray(o).shape) for o in outputs])
""")


@pytest.mark.convert
def test_rebuilt_blazeface_graph_runs_with_the_onednn_switch_unset() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs the convert extra (TensorFlow)")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    done = subprocess.run([sys.executable, "-c", REPRODUCTION], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, f"reproduction exited {done.returncode}:\n{done.stderr[-4000:]}"
    assert "switch 0 shapes [(1, 896, 16), (1, 896, 1)]" in done.stdout


CRASHING_MODULE = textwrap.dedent("""
    import os
    import signal

    import pytest


    @pytest.mark.convert
    def test_native_crash():
        os.kill(os.getpid(), signal.SIGSEGV)


    @pytest.mark.convert
    def test_isolated_and_fine(tmp_path):
        assert tmp_path.is_dir()


    @pytest.mark.convert
    def test_isolated_skip():
        pytest.skip("skips travel back from the child")


    def test_in_process_after_the_crash():
        assert True
""")


def test_a_crashing_convert_test_fails_alone_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "test_crash.py").write_text(CRASHING_MODULE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    convert: converter check\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("FACEGATE_TEST_CHILD_REPORTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.fixtures.isolation", "-p", "no:cacheprovider",
                           "-rA", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 2 passed, 1 skipped" in out, out
    assert "FAILED test_crash.py::test_native_crash" in out, out
    assert "killed by SIGSEGV" in out, out
    assert "skips travel back from the child" in out, out
