"""Build-on-demand models: files kept in the repository's ``models/`` but left out of the wheel.

The wheel ships what the defaults need (the daemon's BlazeFace short range + dlib 5-point + Dlib
embedder, MMOD for enrolment's second opinion, ``analyze()``'s emotion/age/gender, OpenCV's cascades
through OpenCV) in one runtime variant each. Two kinds of file stay out:

* reference and alternative variants of a shipped family (:data:`REFERENCE_MODELS`): the fp32
  siblings of the int8 embedder and attribute networks are the converters' references (a 22 MB
  embedder, an 11 MB age network), the fp32 FaceMesh and MTCNN files are the originals of their
  float16 rebuilds, and the int8 BlazeFace and MMOD files are alternatives to the default fp16 / fp32
  ones (faster on some ARM boards; ``facegate bench`` compares the installed ones);
* whole families no default uses (:data:`ON_DEMAND_FAMILIES`): the ``mediapipe_full`` and ``mtcnn``
  detectors and the ``facemesh`` landmarks that liveness ``blink``/``motion`` need (3.6 MB together,
  which took facegate's installed size over the 20 MB of issue 12).

The wheel excludes all of them (``[tool.hatch.build.targets.wheel] exclude`` in pyproject.toml lists
the same names; a test keeps the two in step), tests and ``facegate models build`` use them from a
source checkout, and an installed facegate gets them with ``facegate models build --only CONVERTER``
(the ``convert`` extra), which writes to the user models directory.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OnDemandModel:
    name: str  # manifest name; the files are NAME.yaml and NAME.tflite
    kind: str
    family: str
    variant: str
    converter: str  # the `facegate models build --only` name that writes it
    size_mb: float  # of the .tflite file, for messages
    #: what needs the file when it is its family's default variant: without it an installed facegate has
    #: no model of the family at all ("" for reference and alternative variants)
    used_by: str = ""
    #: the user-facing family a sub-network belongs to (MTCNN's R- and O-Net: "mtcnn"), else ""
    part_of: str = ""

    @property
    def whole_family(self) -> bool:
        return bool(self.used_by)


_MTCNN = "the 'mtcnn' detector"

ON_DEMAND_MODELS: tuple[OnDemandModel, ...] = (
    OnDemandModel("dlib_resnet_fp32", "embedder", "Dlib", "fp32", "dlib_resnet", 22.4),
    OnDemandModel("age_dlib_fp32", "age", "dlib", "fp32", "age_gender", 10.8),
    OnDemandModel("gender_dlib_fp32", "gender", "dlib", "fp32", "age_gender", 0.5),
    OnDemandModel("blazeface_short_int8", "detector", "mediapipe", "int8", "blazeface", 0.18),
    OnDemandModel("blazeface_full_int8", "detector", "mediapipe_full", "int8", "blazeface", 0.77),
    OnDemandModel("mmod_int8", "detector", "dlib", "int8", "mmod", 0.19),
    OnDemandModel("facemesh_fp32", "landmarks", "facemesh", "fp32", "facemesh", 2.44),
    OnDemandModel("mtcnn_pnet_fp32", "detector", "mtcnn", "fp32", "mtcnn", 0.03),
    OnDemandModel("mtcnn_rnet_fp32", "detector", "mtcnn_rnet", "fp32", "mtcnn", 0.41, part_of="mtcnn"),
    OnDemandModel("mtcnn_onet_fp32", "detector", "mtcnn_onet", "fp32", "mtcnn", 1.56, part_of="mtcnn"),
    # whole families: the default variants of backends no default configuration uses
    OnDemandModel("blazeface_full_fp16", "detector", "mediapipe_full", "fp16", "blazeface", 1.08,
                  used_by="the 'mediapipe_full' detector (BlazeFace full range)"),
    OnDemandModel("mtcnn_pnet_fp16", "detector", "mtcnn", "fp16", "mtcnn", 0.019, used_by=_MTCNN),
    OnDemandModel("mtcnn_rnet_fp16", "detector", "mtcnn_rnet", "fp16", "mtcnn", 0.207, used_by=_MTCNN,
                  part_of="mtcnn"),
    OnDemandModel("mtcnn_onet_fp16", "detector", "mtcnn_onet", "fp16", "mtcnn", 0.787, used_by=_MTCNN,
                  part_of="mtcnn"),
    OnDemandModel("facemesh_fp16", "landmarks", "facemesh", "fp16", "facemesh", 1.25,
                  used_by="the 'facemesh' landmarks (liveness 'blink' and 'motion', landmarks='facemesh')"),
)

#: variants of families the wheel ships (or, for fp32 FaceMesh/MTCNN, of the whole families below)
REFERENCE_MODELS: tuple[OnDemandModel, ...] = tuple(m for m in ON_DEMAND_MODELS if not m.whole_family)
#: the default variants of the families an installed facegate has none of until they are built
ON_DEMAND_FAMILIES: tuple[OnDemandModel, ...] = tuple(m for m in ON_DEMAND_MODELS if m.whole_family)


def find_reference(kind: str, family: str, variant: str | None) -> OnDemandModel | None:
    """The build-on-demand model of ``kind``/``family`` (case-insensitive) and ``variant``; without a
    variant, the family's default one if the whole family is built on demand."""
    wanted = family.casefold()
    for ref in ON_DEMAND_MODELS:
        if ref.kind != kind or ref.family.casefold() != wanted:
            continue
        if ref.variant == variant or (variant is None and ref.whole_family):
            return ref
    return None


def find_by_name(name: str) -> OnDemandModel | None:
    """The build-on-demand model whose manifest is ``name``, if it is one."""
    return next((ref for ref in ON_DEMAND_MODELS if ref.name == name), None)


def how_to_get(ref: OnDemandModel) -> str:
    """Where a missing build-on-demand model comes from, for error messages and ``facegate doctor``."""
    it = "it"
    if ref.whole_family:
        files = [m for m in ON_DEMAND_FAMILIES if m.used_by == ref.used_by]
        it = "them" if len(files) > 1 else "it"
        what = (f"{', '.join(m.name for m in files)} ({sum(m.size_mb for m in files):.2f} MB), for {ref.used_by}, "
                f"{'are not default models' if len(files) > 1 else 'is not a default model'}: facegate's wheel "
                f"leaves {it} out")
    else:
        what = f"{ref.name} ({ref.size_mb:.2f} MB) is a variant that facegate's wheel leaves out"
    return (f"{what}; build {it} with `pip install 'facegate[convert]'` then "
            f"`facegate models build --only {ref.converter}` (writes to the user models directory; or run that "
            f"with `--out DIR` on another machine and copy DIR's files there), or run from a source checkout, "
            f"whose models/ has {it}")


__all__ = ["ON_DEMAND_FAMILIES", "ON_DEMAND_MODELS", "REFERENCE_MODELS", "OnDemandModel", "find_by_name",
           "find_reference", "how_to_get"]
