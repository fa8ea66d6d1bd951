"""``facegate models build | verify | list``: the model zoo.

``build`` regenerates the bundled models from pinned pip packages (needs the ``convert`` extra);
``verify`` checks every manifest, file size, sha256 and that the file loads in the interpreter;
``list`` shows what is installed. Further actions (``models import``) register themselves from
their own modules listed in :data:`ACTION_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegate.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE
from facegate.commands.output import emit_json, emit_table, emit_text
from facegate.errors import ConfigError, FacegateError, ModelError

logger = logging.getLogger(__name__)

#: modules under ``facegate.commands`` exposing ``register_action(actions)`` to add ``models <action>``
ACTION_MODULES: tuple[str, ...] = ("models_import",)

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="build, verify and list models", description=__doc__)
    actions = p.add_subparsers(dest="models_action", metavar="ACTION")

    b = actions.add_parser("build", help="regenerate models from pip packages (convert extra)")
    b.add_argument("--only", nargs="+", metavar="NAME", help="converter modules to run (default: all)")
    b.add_argument("--out", type=Path, help="output directory (default: the repository's models/ in a source "
                   "checkout, else the user models directory)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    b.add_argument("--threads", type=int, default=1, help="threads a converter may use (default 1)")
    b.set_defaults(models_handler=run_build)

    v = actions.add_parser("verify", help="check manifests, sizes, sha256 and that every model loads")
    v.add_argument("--dir", dest="dirs", type=Path, action="append", metavar="DIR",
                   help="model directory to check (repeatable; default: bundled and user directories)")
    v.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    v.set_defaults(models_handler=run_verify)

    ls = actions.add_parser("list", help="list installed models")
    ls.add_argument("--dir", dest="dirs", type=Path, action="append", metavar="DIR",
                    help="model directory to list (repeatable; default: bundled and user directories)")
    ls.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    ls.set_defaults(models_handler=run_list)

    for name in ACTION_MODULES:
        try:
            module = importlib.import_module(f"facegate.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"facegate.commands.{name}":
                continue  # action not built in this checkout
            raise
        module.register_action(actions)

    p.set_defaults(handler=_dispatch, models_parser=p)


def _dispatch(args: argparse.Namespace) -> int:
    handler: Handler | None = getattr(args, "models_handler", None)
    if handler is None:
        args.models_parser.print_help(sys.stderr)
        return EXIT_USAGE
    return handler(args)


# -- build -----------------------------------------------------------------------------------


def default_build_dir() -> Path:
    """Where ``facegate models build`` writes without ``--out``.

    In a source checkout the converters regenerate the repository's ``models/``. In an installed package
    the bundled directory is not the place: it may be read-only, and a reinstall would drop what was built
    there (the reference variants the wheel leaves out); the user models directory is read after it.
    """
    from facegate.inference.manifest import bundled_models_dir, user_models_dir

    bundled = bundled_models_dir()
    return bundled if (bundled.parent / "pyproject.toml").is_file() else user_models_dir()


def run_build(args: argparse.Namespace) -> int:
    from facegate.convert import CONVERTERS
    from facegate.convert.context import BuildContext
    from facegate.convert.tf_import import disable_onednn

    if importlib.util.find_spec("tensorflow") is None:
        raise ConfigError("`facegate models build` needs the convert extra: pip install 'facegate[convert]'")
    disable_onednn()  # before any converter imports TensorFlow: see facegate.convert.tf_import
    selected = list(CONVERTERS)
    if args.only:
        unknown = [n for n in args.only if n not in CONVERTERS]
        if unknown:
            raise ConfigError(f"unknown converter(s) {', '.join(unknown)}; available: {', '.join(CONVERTERS)}")
        selected = [n for n in CONVERTERS if n in args.only]
    out_dir: Path = args.out if args.out is not None else default_build_dir()
    ctx = BuildContext(out_dir=out_dir, seed=args.seed, num_threads=max(1, args.threads))
    written: list[Path] = []
    for name in selected:
        module = importlib.import_module(f"facegate.convert.{name}")
        logger.info("running converter %s into %s", name, out_dir)
        written += module.build(ctx)
    for path in written:
        emit_text(str(path))
    return EXIT_OK


# -- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    path: Path
    name: str
    ok: bool
    detail: str
    file: str | None = None  # the model file the manifest names, when it could be read


def _default_dirs() -> list[Path]:
    from facegate.inference.manifest import model_dirs

    return [d for d in model_dirs() if d.is_dir()]


def _dirs(args: argparse.Namespace) -> list[Path]:
    if not args.dirs:
        return _default_dirs()
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        raise ConfigError(f"not a directory: {', '.join(str(d) for d in missing)}")
    return list(args.dirs)


def check_manifest(path: Path) -> CheckResult:
    """Parse the manifest, check its model file's size and sha256, load it in the interpreter."""
    from facegate.inference.manifest import load_manifest, verify_file

    try:
        manifest = load_manifest(path)
        model = verify_file(manifest)
        detail = f"{manifest.format}, {manifest.size_bytes} bytes, sha256 ok"
        if model != manifest.model_path:
            detail += f", OpenCV's copy at {model}"
        if manifest.format == "tflite":
            detail += _check_tflite(model, manifest)
    except FacegateError as err:
        return CheckResult(path, path.stem, False, str(err), _named_file(path))
    return CheckResult(path, manifest.name, True, detail, manifest.file)


def _where(manifest: Any) -> Path | str:
    """The model file a manifest resolves to, or its expected path marked missing."""
    from facegate.inference.manifest import locate_file

    try:
        return locate_file(manifest)
    except FacegateError:
        return f"{manifest.model_path} (missing)"


def _named_file(path: Path) -> str | None:
    """The ``file:`` of a manifest that failed validation, if it can still be read."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return str(data["file"]) if isinstance(data, dict) and "file" in data else None


def _check_tflite(model: Path, manifest: Any) -> str:
    from facegate.inference.tflite import TfliteModel

    loaded = TfliteModel(model, num_threads=1)
    spec = manifest.input
    if spec is not None:
        shape = loaded.inputs[0].shape
        want = (spec.height, spec.width, spec.channels) if spec.layout == "NHWC" else (
            spec.channels, spec.height, spec.width)
        if tuple(shape[1:]) != want:
            raise ModelError(f"{model.name}: input shape {shape} does not match its manifest {want}")
    return f", loads ({len(loaded.inputs)} in, {len(loaded.outputs)} out)"


def verify_dirs(dirs: list[Path]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for directory in dirs:
        referenced: set[str] = set()
        for path in sorted(directory.glob("*.yaml")):
            result = check_manifest(path)
            results.append(result)
            if result.file:
                referenced.add(result.file)
        for model in sorted(directory.glob("*.tflite")):
            if model.name not in referenced:
                logger.warning("model file %s has no manifest; it is never loaded", model)
    return results


def run_verify(args: argparse.Namespace) -> int:
    dirs = _dirs(args)
    results = verify_dirs(dirs)
    if args.json:
        emit_json([{"manifest": str(r.path), "name": r.name, "ok": r.ok, "detail": r.detail} for r in results])
    elif results:
        emit_table(["manifest", "status", "detail"],
                   [[str(r.path), "ok" if r.ok else "FAILED", r.detail] for r in results])
    else:
        emit_text(f"no model manifests in {', '.join(str(d) for d in dirs) or 'any model directory'}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        sys.stderr.write(f"facegate: model check failed: {r.path}: {r.detail}\n")
    return EXIT_BAD_INPUT if failed else EXIT_OK


# -- list ------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from facegate.inference.manifest import ModelZoo

    dirs = _dirs(args)
    zoo = ModelZoo(tuple(dirs))
    for path, error in zoo.errors.items():
        sys.stderr.write(f"facegate: skipped {path}: {error}\n")
    manifests = sorted(zoo.all(), key=lambda m: (m.kind, m.family.casefold(), not m.default, m.name))
    rows = [
        {
            "name": m.name,
            "kind": m.kind,
            "family": m.family,
            "variant": m.variant,
            "default": m.default,
            "size_bytes": m.size_bytes,
            "model_id": m.model_id,
            "licence": m.licence,
            "path": str(_where(m)),
        }
        for m in manifests
    ]
    if args.json:
        emit_json(rows)
    elif rows:
        emit_table(
            ["name", "kind", "family", "variant", "default", "MB", "licence"],
            [[m.name, m.kind, m.family, m.variant, "yes" if m.default else "", round(m.size_bytes / 1e6, 2), m.licence]
             for m in manifests],
        )
    else:
        emit_text("no models installed")
    return EXIT_OK


__all__ = ["ACTION_MODULES", "CheckResult", "check_manifest", "register", "verify_dirs"]
