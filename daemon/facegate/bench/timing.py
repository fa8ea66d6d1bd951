"""Small timing helpers shared by the benchmark modules."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def median_ms(fn: Callable[[], object], *, repeat: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


#: Runs ``facegate`` with ``sys.argv[2:]`` and writes the process's own VmHWM (kB) to ``sys.argv[1]`` at exit.
#: ``sys.argv[2] == "--cap-off"`` first lifts the pixel cap (the hostile-image benchmark's "before").
_CHILD = (
    "import atexit, runpy, sys\n"
    "out = sys.argv[1]\n"
    "def peak():\n"
    "    hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
    "    open(out, 'w').write(hwm[0] if hwm else '')\n"
    "atexit.register(peak)\n"
    "args = sys.argv[2:]\n"
    "if args and args[0] == '--cap-off':\n"
    "    from facegate.images import set_max_pixels\n"
    "    set_max_pixels(10**12)\n"
    "    args = args[1:]\n"
    "sys.argv = ['facegate', *args]\n"
    "runpy.run_module('facegate', run_name='__main__')\n"
)


def child_peak_rss_mb(args: list[str]) -> tuple[int, float]:
    """Exit code and peak RSS in MB of ``python -m facegate ARGS`` run as a child (Linux).

    The child reports its own ``VmHWM``: ``wait4``'s ``ru_maxrss`` would include the pages it shared
    with this (larger) process between fork and exec.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".hwm") as report:
        done = subprocess.run([sys.executable, "-c", _CHILD, report.name, *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False, env=os.environ.copy())
        text = Path(report.name).read_text().strip()
    return done.returncode, (int(text) / 1024.0 if text else float("nan"))
