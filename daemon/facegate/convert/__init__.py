"""Converters that regenerate every file in ``models/`` from pip packages (the ``convert`` extra).

Each converter module exposes ``build(ctx: BuildContext) -> list[Path]`` returning the manifests it
wrote. Nothing here is imported at run time.
"""

from __future__ import annotations

#: converter modules under ``facegate.convert``, run in this order by ``facegate models build``
CONVERTERS: tuple[str, ...] = (
    "dlib_resnet", "blazeface", "shape_predictor", "facemesh", "emotion", "age_gender", "haar", "mtcnn", "mmod",
)
