"""Which build-on-demand models a configuration needs that this machine does not have.

The wheel leaves out models no default uses (:mod:`facegate.inference.reference_models`): the
``mtcnn`` and ``mediapipe_full`` detectors, the ``facemesh`` landmarks of liveness ``blink``/``motion``,
and the reference variants. A configuration naming one must be refused before it runs -- by the daemon
at start, by ``facegate check-config`` and ``facegate doctor --config``, and for a remote patch or a
SIGHUP reload before the running configuration is replaced -- with the message saying how to build
it, not when a rebuild halfway through a reconfiguration fails.

Only manifests and files are looked up (no interpreter is loaded), so the check is cheap enough for
every patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from facegate.errors import ModelNotInstalledError
from facegate.inference.manifest import ModelKind, ModelZoo, default_zoo, locate_file
from facegate.inference.reference_models import ON_DEMAND_MODELS

if TYPE_CHECKING:
    from facegate.config.models import FacegateConfig


@dataclass(frozen=True, slots=True)
class MissingModel:
    loc: str  # the configuration key that asks for it, e.g. "detector.backend"
    msg: str  # what is missing and how to build it

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}"


def _families(name: str) -> list[tuple[ModelKind, str]]:
    """The (kind, family) pairs a detector backend ``name`` loads, if any of them is built on demand:
    its own family and its sub-networks' (MTCNN's R- and O-Net)."""
    wanted = name.casefold()
    found: list[tuple[ModelKind, str]] = []
    for ref in ON_DEMAND_MODELS:
        if ref.kind == "detector" and wanted in (ref.family.casefold(), ref.part_of.casefold()):
            pair: tuple[ModelKind, str] = ("detector", ref.family)
            if pair not in found:
                found.append(pair)
    return found


def _problem(zoo: ModelZoo, kind: ModelKind, family: str, variant: str | None) -> str | None:
    try:
        locate_file(zoo.family(kind, family, variant))
    except ModelNotInstalledError as err:
        return str(err)
    return None


def missing_models(config: FacegateConfig, zoo: ModelZoo | None = None) -> list[MissingModel]:
    """The build-on-demand models ``config`` needs that ``zoo`` (default: the installed models) lacks."""
    zoo = zoo if zoo is not None else default_zoo()
    out: list[MissingModel] = []
    det = config.detector
    for kind, family in _families(det.backend):
        problem = _problem(zoo, kind, family, det.variant)
        if problem is not None:
            # another variant of the family being there makes the variant the key to change
            other = det.variant is not None and any(
                m.kind == kind and m.family.casefold() == family.casefold() for m in zoo.all())
            out.append(MissingModel("detector.variant" if other else "detector.backend", problem))
            break  # the sub-networks come from the same build
    if config.liveness.mode != "off":
        problem = _problem(zoo, "landmarks", "facemesh", None)
        if problem is not None:
            out.append(MissingModel("liveness.mode", f"liveness {config.liveness.mode!r} runs FaceMesh: {problem}"))
    return out


def require_models(config: FacegateConfig, zoo: ModelZoo | None = None) -> None:
    """Raise :class:`ModelNotInstalledError` naming every missing model of ``config``."""
    missing = missing_models(config, zoo)
    if missing:
        raise ModelNotInstalledError("; ".join(str(m) for m in missing))


__all__ = ["MissingModel", "missing_models", "require_models"]
