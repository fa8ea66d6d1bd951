"""The commands' stdout writers live in :mod:`facegate.output` (evaluation reports print through them
too, and a library module must not import the CLI package)."""

from __future__ import annotations

from facegate.output import emit_json, emit_table, emit_text

__all__ = ["emit_json", "emit_table", "emit_text"]
