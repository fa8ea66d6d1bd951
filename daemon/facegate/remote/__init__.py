"""Remote management over MQTT: signed commands (configuration, enrolment), fleet gallery sync, event
signatures.

* :mod:`~facegate.remote.signing` - HMAC-SHA256 over RFC 8785 canonical JSON, bound to the topic;
  ``sign_command`` for operators and tests, ``verify_event`` for lock controllers;
* :mod:`~facegate.remote.replay_guard`, :mod:`~facegate.remote.rate_limit` - freshness and flood control;
* :mod:`~facegate.remote.schemas` - the command and result payloads (pydantic, JSON Schemas in
  ``config/commands/``);
* :mod:`~facegate.remote.commands` - :class:`CommandHandler`, broker-independent (checks, dispatch,
  config and gallery actions); :mod:`~facegate.remote.enrolment` screens and stores enrolment photos and
  vectors; :mod:`~facegate.remote.results` holds result values, command/result topics, ``config/state``;
* :mod:`~facegate.remote.fleet` - :class:`FleetSync`, retained signed person records;
* :mod:`~facegate.remote.wiring` - :func:`build_remote` connects all of it to the MQTT publisher.

Nothing here is imported by ``import facegate``; import the submodules.
"""

from __future__ import annotations
