"""The security section: remote commands and event signing (secrets are named, never inlined).
"""

from __future__ import annotations

from pydantic import (
    Field,
)

from facegate.config.base import (
    ConfigPath,
    CredentialName,
    _Section,
)


class SecurityConfig(_Section):
    """Remote commands and event signing. Secrets are read from systemd credentials or files at run
    time: the YAML names them, it never contains them."""

    commands_enabled: bool = Field(default=True, description="accept remote commands (config, gallery) over MQTT")
    command_secret_credential: CredentialName | None = Field(
        default="command_secret",
        description="systemd credential ($CREDENTIALS_DIRECTORY/<name>) holding the per-fleet HMAC secret",
    )
    command_secret_file: ConfigPath | None = Field(
        default=None, description="file holding the HMAC secret, used when the credential is absent"
    )
    allow_unsigned: bool = Field(default=False, description="accept unsigned commands (development only)")
    max_skew_s: float = Field(
        default=30.0, ge=1.0, le=3600.0, description="reject commands whose timestamp is further off, seconds"
    )
    sign_events: bool = Field(default=False, description="sign published events with the device key")
    event_key_credential: CredentialName | None = Field(
        default="event_key", description="systemd credential holding the device's event-signing key"
    )
    event_key_file: ConfigPath | None = Field(
        default=None, description="file holding the event-signing key, used when the credential is absent"
    )
    max_payload_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="commands larger than this are rejected before decoding",
    )
    commands_per_minute: int = Field(default=30, ge=1, le=6000, description="rate limit on accepted commands")
    max_image_pixels: int = Field(
        default=40_000_000,  # facegate.images.DEFAULT_MAX_PIXELS (not imported: config loads no OpenCV)
        ge=100_000,
        le=400_000_000,
        description="pixel cap on every decoded image (enrolment photos, replayed image folders): an image "
        "whose header announces more pixels is refused before decoding, except a JPEG, decoded at 1/2, 1/4 "
        "or 1/8 size when that fits; bounds memory on hostile input",
    )
