"""JSON Schema of ``facegate.yaml``, generated from the models.

The committed ``config/facegate.schema.json`` must equal :func:`render_schema` (a test checks it);
regenerate it with ``python -m facegate.config.schema config/facegate.schema.json``. Editors that
understand JSON Schema (e.g. yaml-language-server) validate and complete the YAML with it;
runtime-settable keys carry ``"runtime": "live" | "rebuild:<component>"``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facegate.config.models import FacegateConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    schema = FacegateConfig.model_json_schema(mode="validation")
    return {**schema, "$schema": SCHEMA_DIALECT, "title": "facegate configuration (facegate.yaml)"}


def render_schema() -> str:
    """Deterministic text of the schema file (sorted keys, trailing newline)."""
    return json.dumps(config_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_schema()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["config_schema", "render_schema"]
