"""Building the paho client of the publisher: protocol, logging, backoff, last will, credentials, TLS.

Split from :mod:`facegate.events.mqtt`: how the connection is configured, not what travels on it. The
publisher attaches its callbacks to the client this returns.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from facegate.errors import ConfigError
from facegate.events.mqtt_settings import MqttSettings, TlsSettings
from facegate.events.payloads import STATUS_OFFLINE

#: the logger paho writes to (``facegate.events.mqtt.paho``, as before the split)
PAHO_LOGGER = "facegate.events.mqtt.paho"


class _PahoNoConnectionFilter(logging.Filter):
    """paho 2.x logs an ERROR on every loop iteration while a reconnect is pending ("Client is not
    connected"); the publisher reports unreachable brokers itself, once, so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def build_client(settings: MqttSettings, client_id: str, status_topic: str) -> paho.Client:
    """A configured paho client (not connected) whose last will is retained ``offline`` on ``status_topic``."""
    s = settings
    protocol = paho.MQTTv5 if s.protocol == "5" else paho.MQTTv311
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=True if protocol == paho.MQTTv311 else None,
    )
    paho_logger = logging.getLogger(PAHO_LOGGER)
    if not any(isinstance(f, _PahoNoConnectionFilter) for f in paho_logger.filters):
        paho_logger.addFilter(_PahoNoConnectionFilter())
    client.enable_logger(paho_logger)
    # Unlimited inside paho: the sender bounds what it hands over itself.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
    client.will_set(status_topic, STATUS_OFFLINE, qos=1, retain=True)
    if s.username is not None:
        client.username_pw_set(s.username, s.password)
    if s.tls is not None:
        configure_tls(client, s.tls)
    return client


def configure_tls(client: paho.Client, tls: TlsSettings) -> None:
    """TLS 1.2+ with certificate and host name verification; a client certificate when given."""
    for label, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"mqtt tls {label} {path} does not exist")
    if (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError("mqtt tls cert_file and key_file must be given together")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=tls.key_password)
        except (ssl.SSLError, OSError) as err:
            raise ConfigError(f"mqtt tls client certificate/key cannot be loaded: {err}") from err
    client.tls_set_context(context)
    client.tls_insecure_set(False)


__all__ = ["PAHO_LOGGER", "build_client", "configure_tls"]
