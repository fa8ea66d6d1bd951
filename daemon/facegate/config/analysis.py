"""Per-track extras: facial attribute analysis and active liveness.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from facegate.config.base import (
    _ANALYSIS,
    _LIVENESS,
    _Section,
)


class AnalysisConfig(_Section):
    """Also accepts the YAML shorthand ``analysis: [emotion, age, gender]``."""

    actions: tuple[Literal["emotion", "age", "gender"], ...] = Field(
        default=(),
        description="attributes computed once per track and attached to events: emotion, age, gender",
        json_schema_extra=_ANALYSIS,
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"actions": value} if isinstance(value, (list, tuple)) else value

    @field_validator("actions", mode="before")
    @classmethod
    def _no_race(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if "race" in value:
                raise ValueError("'race' is not available: no redistributable race model exists offline")
            if len(set(map(str, value))) != len(value):
                raise ValueError("actions must not repeat")
        return value


class LivenessConfig(_Section):
    """Active 2-D liveness: a print or a screen is refused, a video replay of a blinking face is not.
    Also accepts the YAML shorthand ``liveness: blink``."""

    mode: Literal["off", "blink", "motion", "blink+motion"] = Field(
        default="off",
        description="liveness evidence a track needs before it can be recognized",
        json_schema_extra=_LIVENESS,
    )
    window_s: float = Field(
        default=3.0,
        gt=0.0,
        le=60.0,
        description="time a track has to show liveness, seconds",
        json_schema_extra=_LIVENESS,
    )
    blink_closed_ratio: float = Field(
        default=0.6,
        gt=0.05,
        lt=0.85,
        description="a blink is the eye aspect ratio dipping to this fraction of the track's own open-eye value",
        json_schema_extra=_LIVENESS,
    )
    blink_min_count: int = Field(
        default=1, ge=1, le=10, description="blinks needed within the window", json_schema_extra=_LIVENESS
    )
    motion_min_parallax: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="minimum relative 3-D parallax between landmarks across frames (a flat photo has ~0)",
        json_schema_extra=_LIVENESS,
    )
    on_fail: Literal["spoof", "undecided"] = Field(
        default="spoof",
        description="outcome for a track that fails: a 'spoof' event, or no event",
        json_schema_extra=_LIVENESS,
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, (str, bool)) else value

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `mode: off` as false
        return "off" if value is False else value
