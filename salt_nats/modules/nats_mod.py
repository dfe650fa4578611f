"""
Publish messages on NATS from minions: ``salt '*' nats.publish <subject> <data>``.

The connection settings come from the minion config or pillar, either as one
``nats`` mapping or as flat ``nats.<option>`` keys, which win over the mapping:

.. code-block:: yaml

    nats:
      servers:
        - nats://nats1.example.com:4222
      connect_timeout: 2

    # or
    nats.servers: nats://nats1.example.com:4222

Only ``servers``, ``connect_timeout`` and the authentication and TLS options
(``user``, ``password``, ``token``, ``nkeys_seed``, ``creds``, ``tls_ca_file`` and the
rest, as in the engine's configuration) are read. Other keys under ``nats``, such as
the returner's, are left alone. Each option is checked as the engine checks its
option of the same name. Keyword arguments of the same name override them for one
call.
"""

import logging
import math

import salt.utils.args
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "nats"

try:
    from salt_nats import client
    from salt_nats.config import AUTH_OPTIONS, ConfigError, parse_engine_settings, parse_option
    from salt_nats.secrets import resolve_secrets

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # nats-py or msgpack missing from Salt's environment
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

# The options this module reads from the minion config, pillar and keyword arguments.
CONNECTION_OPTIONS = ("servers", "connect_timeout", *AUTH_OPTIONS) if HAS_LIBS else ()

_MISSING = object()


def __virtual__():
    if not HAS_LIBS:
        return (
            False,
            f"The nats execution module cannot load: {IMPORT_ERROR}. Install salt-nats into "
            "the minion's Salt environment, for example with: salt-pip install salt-nats",
        )
    return __virtualname__


def publish(subject, data="", headers=None, timeout=5, **kwargs):
    """
    Publish one message on NATS and wait until the server has received it.

    subject
        The subject to publish on. Wildcards are not allowed.

    data
        The payload. A string is sent as UTF-8 text. A dict, list or number is sent
        as JSON, with the header ``Content-Type: application/json``.

    headers
        Optional message headers, as a dict of names to values.

    timeout : 5
        Seconds allowed for connecting and publishing together. When NATS is
        unreachable, the call fails after this time at the latest.

    servers, connect_timeout, and the authentication and TLS options
        Override the settings from the minion config or pillar for this call.

    Returns the subject, the payload size in bytes and the server that received the
    message (without credentials). Raises CommandExecutionError when the message
    could not be published.

    CLI Example:

    .. code-block:: bash

        salt '*' nats.publish ops.heartbeat alive
        salt web01 nats.publish deploy.done '{"version": "1.2"}' headers='{"Team": "web"}'
        salt web01 nats.publish ops.notes hello servers=nats://127.0.0.1:4222
    """
    settings = _connection_settings(kwargs)
    try:
        subject = client.validate_publish_subject(subject)
        payload, content_type = client.encode_data(data)
        headers = client.validate_headers(headers)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
    if content_type is not None:
        headers = dict(headers or {})
        if not any(key.lower() == "content-type" for key in headers):
            headers["Content-Type"] = content_type

    try:
        result = client.publish(
            settings,
            subject,
            payload,
            headers,
            timeout=_seconds("timeout", timeout),
            connection_name=f"salt-nats module@{__opts__.get('id', 'minion')}",
        )
    except client.NatsClientError as exc:
        log.warning("salt-nats: nats.publish on %s failed: %s", subject, exc)
        raise CommandExecutionError(str(exc)) from None

    return {"subject": result.subject, "bytes": result.size, "server": result.server}


def _connection_settings(overrides):
    """Read, check and merge the connection options; raise on an invalid one."""
    overrides = salt.utils.args.clean_kwargs(**overrides)
    unknown = sorted(set(overrides) - set(CONNECTION_OPTIONS))
    if unknown:
        raise SaltInvocationError(
            f"unknown argument {unknown[0]!r}. This function accepts subject, data, headers, "
            f"timeout and the options {', '.join(CONNECTION_OPTIONS)}"
        )

    options = {}

    nested = __salt__["config.option"]("nats", {})
    if nested in (None, ""):
        nested = {}
    if not isinstance(nested, dict):
        raise CommandExecutionError(
            f"invalid nats option in the minion config or pillar: expected a mapping, got "
            f"{type(nested).__name__}"
        )
    for key in CONNECTION_OPTIONS:
        if key in nested:
            options[key] = (nested[key], f"nats:{key}")
        flat = __salt__["config.option"](f"nats.{key}", _MISSING)
        if flat is not _MISSING:
            options[key] = (flat, f"nats.{key}")
        if key in overrides:
            options[key] = (overrides[key], f"the {key} argument")

    if "servers" not in options:
        raise CommandExecutionError(
            "no NATS server is configured: set nats.servers in the minion config or pillar, "
            "or pass servers=nats://host:4222"
        )

    # Check each option first, so the error names where the invalid value came from,
    # then the combination (such as user without password) as the engine does.
    for key, (value, source) in options.items():
        try:
            parse_option(key, value)
        except ConfigError as exc:
            raise CommandExecutionError(f"invalid NATS setting from {source}: {exc}") from None
    try:
        settings = parse_engine_settings({key: value for key, (value, _) in options.items()})
        return resolve_secrets(settings, __opts__)
    except ConfigError as exc:
        raise CommandExecutionError(f"invalid NATS settings: {exc}") from None


def _seconds(name, value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise SaltInvocationError(
            f"invalid {name} {value!r}: expected a number of seconds above 0, such as 5"
        )
    return seconds
