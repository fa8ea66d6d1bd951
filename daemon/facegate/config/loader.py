"""Loading ``facegate.yaml``: line-numbered errors, ``${ENV}`` interpolation, credentials.

The YAML is composed into nodes (PyYAML's safe composer) and built into plain data here, so every key
keeps its line and column: a pydantic error location such as ``("cameras", 0, "source", "fps")`` is
reported as ``facegate.yaml:12:5: cameras[0].source.fps: ...``. Duplicate keys, which PyYAML would
silently collapse, are errors.

Value syntax (documented in ``config/facegate.example.yaml``):

* ``${NAME}``: the environment variable, an error when unset; ``${NAME:-default}``: the default when
  unset or empty; ``$$``: a literal ``$``. Interpolation applies inside any string scalar. A plain
  (unquoted) scalar that interpolates to the empty string is null, so ``username: ${MQTT_USER:-}``
  means "no user name". Other results stay strings (a password of digits stays a string); numbers
  and booleans are converted by the field's type (``port: ${PORT:-1883}`` is the integer 1883).
* ``!credential NAME``: the systemd credential ``$CREDENTIALS_DIRECTORY/NAME``
  (``LoadCredential=NAME:/path`` in the unit).
* ``!secret_file PATH``: the content of a file (relative to the YAML's directory), minus a trailing
  newline.

Values that came from the environment, a credential or a secret file are never echoed in errors.
"""

from __future__ import annotations

import logging
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from facegate.config.models import FacegateConfig, default_state_dir, model_class
from facegate.config.secrets import read_credential, read_secret_file, redact
from facegate.config.validation import ConfigValidationError, FieldError, Loc, Located, dotted, from_pydantic
from facegate.errors import ConfigError

logger = logging.getLogger(__name__)

CREDENTIAL_TAG = "!credential"
SECRET_FILE_TAG = "!secret_file"
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_FILE_BYTES = 1024 * 1024

_STR_TAG = "tag:yaml.org,2002:str"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<fallback>:-(?P<default>[^}]*))?\}|\$\{")


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}``, ``${NAME:-default}`` and ``$$`` in ``text``."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        name = match.group("name")
        if name is None:
            raise ConfigError("invalid '${' reference: use ${NAME}, ${NAME:-default} or $$ for a literal '$'")
        value = environ.get(name)
        if match.group("fallback") is not None and not value:
            default = match.group("default")
            if "${" in default:
                raise ConfigError(f"nested '${{' in the default of ${{{name}}} is not supported")
            return default
        if value is None:
            raise ConfigError(f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
        return value

    return _INTERPOLATION.sub(substitute, text)


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _secret_field_names() -> frozenset[str]:
    names: set[str] = set()
    seen: set[type[Any]] = set()

    def walk(cls: type[Any]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, info in cls.model_fields.items():
            if SecretStr in typing.get_args(info.annotation) or info.annotation is SecretStr:
                names.add(name)
            sub = model_class(info.annotation)
            if sub is not None:
                walk(sub)
            for arg in typing.get_args(info.annotation):
                for member in typing.get_args(arg) or (arg,):
                    inner = model_class(member)
                    if inner is not None:
                        walk(inner)

    walk(FacegateConfig)
    return frozenset(names)


@dataclass(frozen=True)
class YamlDocument:
    """Built YAML data plus the position of every key and value."""

    data: dict[str, Any]
    filename: str
    key_marks: Mapping[Loc, Mark] = field(default_factory=dict)
    value_marks: Mapping[Loc, Mark] = field(default_factory=dict)
    opaque: frozenset[Loc] = frozenset()

    def locate(self, path: Loc) -> Located:
        secret = bool(path) and isinstance(path[-1], str) and path[-1] in _SECRET_FIELDS
        echo = not secret and path in self.value_marks and path not in self.opaque
        for depth in range(len(path), -1, -1):
            prefix = path[:depth]
            mark = self.key_marks.get(prefix) or self.value_marks.get(prefix)
            if mark is not None:
                return Located(path, mark.line, mark.column, echo)
        return Located(path, None, None, echo)


_SECRET_FIELDS = _secret_field_names()


class _Builder:
    """Turns composed YAML nodes into dicts/lists/scalars, recording marks and collecting errors."""

    def __init__(
        self, loader: yaml.SafeLoader, filename: str, base_dir: Path, environ: Mapping[str, str], secrets: bool
    ) -> None:
        self.loader = loader
        self.filename = filename
        self.base_dir = base_dir
        self.environ = environ
        self.secrets = secrets
        self.key_marks: dict[Loc, Mark] = {}
        self.value_marks: dict[Loc, Mark] = {}
        self.opaque: set[Loc] = set()
        self.errors: list[FieldError] = []
        self.nodes = 0

    def error(self, path: Loc, node: yaml.Node, msg: str) -> None:
        mark = _mark(node)
        self.errors.append(FieldError(dotted(path), msg, "yaml", self.filename, mark.line, mark.column))

    def build(self, node: yaml.Node, path: Loc) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or len(path) > MAX_DEPTH:
            raise ConfigValidationError(
                [
                    FieldError(
                        dotted(path),
                        "document too large or too deeply nested (alias expansion?)",
                        "yaml",
                        self.filename,
                        *_astuple(_mark(node)),
                    )
                ]
            )
        self.value_marks[path] = _mark(node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            self.error(path, node, f"unsupported tag {node.tag}")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.ScalarNode):  # pragma: no cover - the composer makes only these three
            raise TypeError(type(node).__name__)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Loc) -> dict[str, Any]:
        self.loader.flatten_mapping(node)  # YAML merge keys ('<<: *anchor')
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.startswith("!"):
                self.error(path, key_node, "keys must be plain strings")
                continue
            key = str(key_node.value)
            key_path: Loc = (*path, key)
            if key in result:
                first = self.key_marks[key_path]
                self.error(key_path, key_node, f"duplicate key (first defined at line {first.line})")
                continue
            self.key_marks[key_path] = _mark(key_node)
            result[key] = self.build(value_node, key_path)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Loc) -> Any:
        tag = node.tag
        if tag in (CREDENTIAL_TAG, SECRET_FILE_TAG):
            self.opaque.add(path)
            return self._secret(node, path)
        if tag.startswith("!"):
            self.error(path, node, f"unknown tag {tag}; use {CREDENTIAL_TAG} NAME or {SECRET_FILE_TAG} PATH")
            return None
        if tag == _STR_TAG and isinstance(node.value, str) and "$" in node.value:
            try:
                text = interpolate(node.value, self.environ)
            except ConfigError as err:
                self.error(path, node, str(err))
                return None
            if text != node.value:
                self.opaque.add(path)
            if node.style is None and text == "" and node.value.startswith("${"):
                return None  # `key: ${NAME:-}` means "unset"
            return text
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as err:
            self.error(path, node, str(getattr(err, "problem", None) or err))
            return None

    def _secret(self, node: yaml.Node, path: Loc) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            self.error(path, node, f"{node.tag} takes a name or path")
            return None
        ref = str(node.value).strip()
        if not self.secrets:
            return f"<{node.tag[1:]} {ref}>"
        try:
            if node.tag == CREDENTIAL_TAG:
                return read_credential(ref, self.environ)
            target = Path(ref).expanduser()
            return read_secret_file(target if target.is_absolute() else self.base_dir / target)
        except ConfigError as err:
            self.error(path, node, str(err))
            return None


def _astuple(mark: Mark) -> tuple[int, int]:
    return mark.line, mark.column


def parse_document(
    text: str,
    *,
    filename: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> YamlDocument:
    """Build the YAML ``text`` into data with marks; ConfigValidationError on syntax errors, duplicate
    keys, unset variables or missing credentials."""
    env = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
            problem = err.problem or err.context or "invalid YAML"
            raise ConfigValidationError(
                [FieldError("", f"YAML syntax: {problem}", "yaml", filename, line, column)]
            ) from None
        except yaml.YAMLError as err:
            raise ConfigValidationError([FieldError("", f"YAML syntax: {err}", "yaml", filename)]) from None
        if root is None:
            return YamlDocument({}, filename)
        builder = _Builder(loader, filename, base_dir or Path.cwd(), env, resolve_secrets)
        data = builder.build(root, ())
    finally:
        loader.dispose()
    if builder.errors:
        raise ConfigValidationError(builder.errors)
    if not isinstance(data, dict):
        raise ConfigValidationError(
            [
                FieldError(
                    "", "the top level must be a mapping of sections (device:, cameras:, ...)", "yaml", filename, 1, 1
                )
            ]
        )
    return YamlDocument(data, filename, builder.key_marks, builder.value_marks, frozenset(builder.opaque))


def validate_document(
    document: YamlDocument, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> FacegateConfig:
    """Validate built data against :class:`FacegateConfig`, errors mapped to lines."""
    try:
        config = FacegateConfig.model_validate(document.data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as err:
        # `from None`: pydantic's own message would print the rejected inputs, secrets included
        raise ConfigValidationError(
            from_pydantic(err, document.data, document.locate, file=document.filename)
        ) from None
    if config.state_dir is None:
        config = config.model_copy(update={"state_dir": default_state_dir(environ)})
    return config


def parse_yaml_config(
    text: str,
    *,
    filename: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    resolve_secrets: bool = True,
) -> FacegateConfig:
    """The configuration in YAML ``text`` (no runtime overlay)."""
    document = parse_document(
        text, filename=filename, base_dir=base_dir, environ=environ, resolve_secrets=resolve_secrets
    )
    return validate_document(document, base_dir=base_dir, environ=environ)


def load_yaml_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None, resolve_secrets: bool = True
) -> FacegateConfig:
    """The configuration in the YAML file ``path`` (no runtime overlay). Relative paths inside it are
    relative to its directory."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{file}: cannot read: {err.strerror}") from err
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{file}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8 text") from err
    config = parse_yaml_config(
        text, filename=str(path), base_dir=file.absolute().parent, environ=environ, resolve_secrets=resolve_secrets
    )
    logger.debug("loaded %s: device %s, %d camera(s)", file, config.device.device_id, len(config.cameras))
    return config


def redacted_dump(config: FacegateConfig) -> dict[str, Any]:
    """JSON-ready effective configuration for ``config/state`` and ``check-config``: secrets masked,
    passwords inside URLs removed."""
    dumped: dict[str, Any] = redact(config.model_dump(mode="json"))
    return dumped


__all__ = [
    "CREDENTIAL_TAG",
    "SECRET_FILE_TAG",
    "YamlDocument",
    "interpolate",
    "load_yaml_config",
    "parse_document",
    "parse_yaml_config",
    "redacted_dump",
    "validate_document",
]
