"""The one place the converter imports TensorFlow (lazily: nothing at run time needs it).

TensorFlow's oneDNN kernels segfault on some CPUs: with tensorflow-cpu 2.21 on a Xeon with AVX-512
BF16/VNNI, calling the BlazeFace graph rebuilt by :func:`facegate.convert.tflite_rebuild.build_tf_function`
once on a (1, 128, 128, 3) input kills the process, while the same call with the plain Eigen kernels
works. TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, when it is first imported, so the switch is set
here, before that import, for every converter and for ``facegate models build``. ``setdefault`` leaves a
user's explicit ``TF_ENABLE_ONEDNN_OPTS=1`` alone. The converter's graphs are small; Eigen costs it
little time.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from facegate.errors import ModelError

logger = logging.getLogger(__name__)

ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def disable_onednn() -> None:
    """Turn TensorFlow's oneDNN kernels off for this process unless the user chose; see the module doc."""
    if ONEDNN_SWITCH not in os.environ and "tensorflow" in sys.modules:
        logger.warning("TensorFlow was imported before facegate's converter could set %s=0; on CPUs with "
                       "AVX-512 BF16 its oneDNN kernels can crash: set %s=0 in the environment",
                       ONEDNN_SWITCH, ONEDNN_SWITCH)
    os.environ.setdefault(ONEDNN_SWITCH, "0")


def import_tensorflow(needed_by: str = "the model converter") -> Any:
    """The ``tensorflow`` module, imported with oneDNN off; :class:`ModelError` naming the extra if absent."""
    disable_onednn()
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ModelError(f"{needed_by} needs TensorFlow: pip install 'facegate[convert]'") from err
    return tf


def configure_threads(num_threads: int) -> None:
    """Limit TensorFlow to ``num_threads`` intra-op threads (one inter-op), if not initialised yet."""
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, num_threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised by an earlier converter in this process
        logger.debug("TensorFlow threads already configured")


__all__ = ["ONEDNN_SWITCH", "configure_threads", "disable_onednn", "import_tensorflow"]
