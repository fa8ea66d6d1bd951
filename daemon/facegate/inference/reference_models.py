"""Build-on-demand variants: model files kept in the repository's ``models/`` but left out of the wheel.

The wheel ships each model in one runtime variant. The others stay out: the fp32 siblings of the int8
embedder and attribute networks are the converters' references (a 22 MB embedder, an 11 MB age
network) and the unchanged fp32 FaceMesh and MTCNN files, whose float16-weight rebuilds are shipped,
and the int8 BlazeFace and MMOD files are alternatives to the default fp16 / fp32 ones (faster on some
ARM boards; ``facegate bench`` compares the installed ones). The wheel excludes them
(``[tool.hatch.build.targets.wheel] exclude`` in pyproject.toml lists the same names; a test keeps the
two in step), tests and ``facegate models build`` use them from a source checkout, and an installed
facegate gets them with ``facegate models build --only CONVERTER`` (the ``convert`` extra), which
writes to the user models directory.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReferenceModel:
    name: str  # manifest name; the files are NAME.yaml and NAME.tflite
    kind: str
    family: str
    variant: str
    converter: str  # the `facegate models build --only` name that writes it
    size_mb: float  # of the .tflite file, for messages


REFERENCE_MODELS: tuple[ReferenceModel, ...] = (
    ReferenceModel("dlib_resnet_fp32", "embedder", "Dlib", "fp32", "dlib_resnet", 22.4),
    ReferenceModel("age_dlib_fp32", "age", "dlib", "fp32", "age_gender", 10.8),
    ReferenceModel("gender_dlib_fp32", "gender", "dlib", "fp32", "age_gender", 0.5),
    ReferenceModel("blazeface_short_int8", "detector", "mediapipe", "int8", "blazeface", 0.18),
    ReferenceModel("blazeface_full_int8", "detector", "mediapipe_full", "int8", "blazeface", 0.77),
    ReferenceModel("mmod_int8", "detector", "dlib", "int8", "mmod", 0.19),
    ReferenceModel("facemesh_fp32", "landmarks", "facemesh", "fp32", "facemesh", 2.44),
    ReferenceModel("mtcnn_pnet_fp32", "detector", "mtcnn", "fp32", "mtcnn", 0.03),
    ReferenceModel("mtcnn_rnet_fp32", "detector", "mtcnn_rnet", "fp32", "mtcnn", 0.41),
    ReferenceModel("mtcnn_onet_fp32", "detector", "mtcnn_onet", "fp32", "mtcnn", 1.56),
)


def find_reference(kind: str, family: str, variant: str | None) -> ReferenceModel | None:
    """The reference model of ``kind``/``family`` (case-insensitive) and ``variant``, if it is one."""
    wanted = family.casefold()
    for ref in REFERENCE_MODELS:
        if ref.kind == kind and ref.family.casefold() == wanted and ref.variant == variant:
            return ref
    return None


def how_to_get(ref: ReferenceModel) -> str:
    """Where a missing reference variant comes from, for error messages and ``facegate doctor``."""
    return (f"{ref.name} ({ref.size_mb:.2f} MB) is a variant that facegate's wheel leaves out; "
            f"build it with `pip install 'facegate[convert]'` then `facegate models build --only {ref.converter}` "
            "(writes to the user models directory), or run from a source checkout, whose models/ has it")


__all__ = ["REFERENCE_MODELS", "ReferenceModel", "find_reference", "how_to_get"]
