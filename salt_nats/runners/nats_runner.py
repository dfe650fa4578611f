"""
Check and use the salt-nats engine from the master: ``salt-run nats.<function>``.

``nats.status`` shows each engine instance's state and counters. It sends a status
request to the instances over the master's event bus, so it works while NATS is down.
``nats.publish``, ``nats.request`` and ``nats.test`` connect to NATS with the
connection settings of the first ``nats`` entry under ``engines:`` in the master
config:

.. code-block:: yaml

    engines:
      - nats:
          servers:
            - nats://nats1.example.com:4222

Pass ``instance=<name>`` to use another instance's entry, and any engine option
(``servers=``, ``connect_timeout=``) to override a setting for one command.

Each function returns a dict with a ``retcode`` key and sets the job's ``retcode``
to the same value: salt-run 3008 takes its exit status from the key, and the
``salt.runner`` state of an orchestration takes success from the job's
``retcode``. An invalid argument also returns ``retcode`` 1, with an ``error``
text, because salt-run exits with 0 after a function raises SaltInvocationError.
"""

import logging
import math
import time
import uuid

import salt.utils.args
import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "nats"

try:
    from salt_nats import client, control, statusview
    from salt_nats.config import ConfigError, parse_engine_settings
    from salt_nats.forwarder import TagFilter
    from salt_nats.secrets import resolve_secrets
    from salt_nats.service import default_status_dir
    from salt_nats.subjects import tag_to_subject

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # nats-py or msgpack missing from Salt's environment
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

# How long the status request waits for other instances after every configured
# instance has replied, to list instances that run but are no longer configured.
_EXTRA_REPLY_WAIT = 0.5

# When neither the request nor a reply has come back on the bus after this many
# seconds, the request is fired once more. It covers a subscription that the
# master's publisher had not registered yet when the first request went out.
_REQUEST_RESEND_AFTER = 1.0

# Maximum wait in seconds for the master bus's publish and pull sockets.
_BUS_CONNECT_TIMEOUT = 5.0

_DEFAULT_TEST_TAG = "nats/test"

# The tag prefix that both the status request and the status replies start with.
_STATUS_TAG_PREFIX = "salt-nats/status/"


def __virtual__():
    if not HAS_LIBS:
        return (
            False,
            f"The nats runner cannot load: {IMPORT_ERROR}. Install salt-nats into Salt's "
            "Python environment, for example with: salt-pip install salt-nats",
        )
    return __virtualname__


def status(timeout=3):
    """
    Show the state and counters of every salt-nats engine instance.

    The runner fires a status request on the master's event bus and waits up to
    ``timeout`` seconds for the replies. Every instance configured under
    ``engines:`` is listed, plus any instance that replies without being configured
    (a master that has not been restarted since its config changed). An instance
    that does not reply is shown from its status file if the file is younger than
    3 x ``heartbeat_interval``. Otherwise the instance is ``down``.

    The exit status is 1 when any instance is ``down`` or ``failed``, or when no
    instance is configured or replies.

    timeout : 3
        Seconds to wait for replies.

    CLI Example:

    .. code-block:: bash

        salt-run nats.status
        salt-run nats.status timeout=10 --out=json
    """
    try:
        timeout = _seconds("timeout", timeout)
    except _UsageError as exc:
        return _failure({}, exc)

    configured = statusview.configured_instances(
        __opts__.get("engines"), default_status_dir(__opts__)
    )
    replies, bus_error = _collect_status_replies(timeout, {i.name for i in configured})

    heartbeats = {}
    for instance in configured:
        if instance.name not in replies:
            heartbeats[instance.name] = control.read_heartbeat(instance.status_dir, instance.name)

    view = statusview.build_status(
        str(__opts__.get("id", "")),
        configured,
        replies,
        heartbeats,
        timeout=timeout,
        now=time.time(),
        bus_error=bus_error,
    )
    return _with_retcode(view, statusview.exit_status(view))


def publish(subject, data="", headers=None, timeout=5, instance=None, **kwargs):
    """
    Publish one message on NATS with the engine's connection settings.

    subject
        The subject to publish on. Wildcards are not allowed.

    data
        The payload. A string is sent as UTF-8 text. A dict, list or number is sent
        as JSON, with the header ``Content-Type: application/json``.

    headers
        Optional message headers, as a dict of names to values.

    timeout : 5
        Seconds allowed for connecting and publishing together.

    instance
        The engine instance whose connection settings to use. Defaults to the first
        ``nats`` entry under ``engines:``.

    Any other keyword argument overrides the engine option of that name, for example
    ``servers=nats://127.0.0.1:4222``.

    Returns the subject, the payload size in bytes and the server that received the
    message (without credentials).

    CLI Example:

    .. code-block:: bash

        salt-run nats.publish ops.notes 'deploy started'
        salt-run nats.publish ops.deploy '{"version": "1.2"}' headers='{"Team": "web"}'
    """
    try:
        settings, name = _engine_settings(instance, kwargs)
        subject, payload, headers = _message(subject, data, headers)
        timeout = _seconds("timeout", timeout)
    except _UsageError as exc:
        return _failure({"subject": subject}, exc)

    try:
        result = client.publish(
            settings,
            subject,
            payload,
            headers,
            timeout=timeout,
            connection_name=_connection_name(),
        )
    except client.NatsClientError as exc:
        log.warning("salt-nats: nats.publish on %s failed: %s", subject, exc)
        return _failure({"subject": subject, "instance": name}, exc)

    return _with_retcode(
        {
            "result": True,
            "subject": result.subject,
            "bytes": result.size,
            "server": result.server,
            "instance": name,
        },
        0,
    )


def request(subject, data="", headers=None, timeout=5, instance=None, **kwargs):
    """
    Send a NATS request with the engine's connection settings and show the reply.

    The arguments are those of ``nats.publish``. ``timeout`` (5 s) covers
    connecting and waiting for the reply together.

    Returns the reply's data decoded as JSON when it is JSON, else as text (None
    when it is not UTF-8), its headers and size, and the round-trip time in
    milliseconds.

    CLI Example:

    .. code-block:: bash

        salt-run nats.request inventory.lookup web01
        salt-run nats.request '$SRV.INFO.salt-nats' timeout=2
    """
    try:
        settings, name = _engine_settings(instance, kwargs)
        subject, payload, headers = _message(subject, data, headers)
        timeout = _seconds("timeout", timeout)
    except _UsageError as exc:
        return _failure({"subject": subject}, exc)

    try:
        reply = client.request(
            settings,
            subject,
            payload,
            headers,
            timeout=timeout,
            connection_name=_connection_name(),
        )
    except client.NatsClientError as exc:
        log.warning("salt-nats: nats.request on %s failed: %s", subject, exc)
        return _failure({"subject": subject, "instance": name}, exc)

    return _with_retcode(
        {
            "result": True,
            "subject": subject,
            "bytes": len(payload),
            "server": reply.server,
            "instance": name,
            "elapsed_ms": round(reply.elapsed * 1000, 1),
            "reply": {
                "data": client.decode_data(reply.data),
                "bytes": len(reply.data),
                "headers": reply.headers,
            },
        },
        0,
    )


def test(timeout=10, instance=None, tag=None, **kwargs):
    """
    Fire an event on the master bus and wait until the engine publishes it on NATS.

    The runner subscribes on NATS to the subject of a new tag
    ``nats/test/<random hex>``, fires an event with that tag on the master's event
    bus, and reports the time from firing to arrival in milliseconds. The exit
    status is 1 when the event does not arrive within ``timeout`` seconds.

    timeout : 10
        Seconds allowed for connecting, firing and the arrival together.

    instance
        The engine instance to test. Defaults to the first ``nats`` entry under
        ``engines:``.

    tag
        The tag prefix of the test event, for an instance whose ``include`` option
        lets only some tags through. A random segment is appended.

    CLI Example:

    .. code-block:: bash

        salt-run nats.test
        salt-run nats.test instance=nats-audit tag=myco/probe
    """
    try:
        settings, name = _engine_settings(instance, kwargs)
        timeout = _seconds("timeout", timeout)
        test_tag = _test_tag(tag)
    except _UsageError as exc:
        return _failure({}, exc)

    result = {"result": False, "instance": name, "tag": test_tag}
    tag_filter = TagFilter(settings.include, settings.excluded_globs)
    if not tag_filter.allows(test_tag):
        return _failure(
            result,
            f"the include and exclude options of instance {name!r} filter out the tag "
            f"{test_tag}, so the engine would never publish it. Pass tag= with a prefix that "
            "the instance forwards.",
        )

    subject = tag_to_subject(test_tag, settings.subject_prefix, settings.max_subject_bytes)
    result["subject"] = subject

    def fire_test_event():
        data = {"salt_nats_test": True, "fired_at": time.time()}
        return _fire_event(test_tag, data, min(_BUS_CONNECT_TIMEOUT, timeout / 2))

    try:
        delivery = client.await_delivery(
            settings,
            subject,
            fire_test_event,
            timeout=timeout,
            connection_name=_connection_name(),
            trigger_step="firing the test event on the master bus",
        )
    except (client.NatsClientError, _BusError) as exc:
        log.warning("salt-nats: nats.test of instance %s failed: %s", name, exc)
        hint = "Run salt-run nats.status to see the state of the engine."
        return _failure(result, f"{str(exc).rstrip('.')}. {hint}")

    result.update(
        {
            "result": True,
            "server": delivery.server,
            "latency_ms": round(delivery.latency * 1000, 1),
        }
    )
    return _with_retcode(result, 0)


# -- helpers ----------------------------------------------------------------------------


class _BusError(Exception):
    """The master's event bus did not take an event."""


class _UsageError(Exception):
    """An argument, or the engine config that a function relies on, is invalid."""


def _with_retcode(result, retcode):
    __context__["retcode"] = retcode
    result["retcode"] = retcode
    return result


def _failure(result, error):
    """Return ``result`` marked as failed with the error text and retcode 1."""
    result = {"result": False, **result, "error": str(error)}
    return _with_retcode(result, 1)


def _seconds(name, value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise _UsageError(
            f"invalid {name} {value!r}: expected a number of seconds above 0, such as 5"
        )
    return seconds


def _test_tag(prefix):
    """Return a new, unique test tag under ``prefix`` (``nats/test`` when None)."""
    prefix = _DEFAULT_TEST_TAG if prefix is None else str(prefix).strip("/")
    if not prefix:
        raise _UsageError("invalid tag '': give a tag prefix such as myco/probe")
    return f"{prefix}/{uuid.uuid4().hex}"


def _connection_name():
    return f"salt-nats runner@{__opts__.get('id', 'master')}"


def _engine_settings(instance, overrides):
    """Return the connection settings of an engine instance, with overrides, and its name."""
    overrides = salt.utils.args.clean_kwargs(**overrides)
    configured = statusview.configured_instances(
        __opts__.get("engines"), default_status_dir(__opts__)
    )

    chosen = None
    if instance is not None:
        matches = [item for item in configured if item.name == str(instance)]
        if not matches:
            names = ", ".join(item.name for item in configured) or "none"
            raise _UsageError(
                f"no nats engine instance named {instance!r} under engines: in the master "
                f"config (configured instances: {names})"
            )
        chosen = matches[0]
    elif configured:
        chosen = configured[0]
    elif "servers" not in overrides:
        raise _UsageError(
            "no nats engine is configured under engines: in the master config. Pass "
            "servers=nats://host:4222 to name a NATS server."
        )

    options = dict(chosen.options) if chosen is not None else {}
    options.update(overrides)
    name = chosen.name if chosen is not None else statusview.DEFAULT_INSTANCE_NAME
    try:
        settings = resolve_secrets(parse_engine_settings(options, default_name=name), __opts__)
    except ConfigError as exc:
        where = f"instance {name!r}" if chosen is not None else "the arguments"
        raise _UsageError(f"invalid NATS settings of {where}: {exc}") from None
    return settings, name


def _message(subject, data, headers):
    try:
        subject = client.validate_publish_subject(subject)
        payload, content_type = client.encode_data(data)
        headers = client.validate_headers(headers)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if content_type is not None:
        headers = dict(headers or {})
        if not any(key.lower() == "content-type" for key in headers):
            headers["Content-Type"] = content_type
    return subject, payload, headers


def _fire_event(tag, data, connect_timeout):
    """Fire one event on the master bus and return the time.monotonic() of the send."""
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        # Connect first, so the measured time starts at the send, not at the connect.
        if not bus.connect_pull(timeout=connect_timeout):
            raise _BusError(
                f"cannot connect to the master event bus in {__opts__['sock_dir']}. "
                "Check that salt-master is running."
            )
        sent_at = time.monotonic()
        if not bus.fire_event(data, tag):
            raise _BusError(f"the master event bus did not take the event {tag}")
    return sent_at


def _collect_status_replies(timeout, expected):
    """Fire a status request and collect the replies until ``timeout`` seconds pass.

    Returns the reports by instance name and an error text when the master bus
    could not be used (None otherwise). It returns early once every name in
    ``expected`` has replied and no further reply came for a short while.
    """
    request_id = uuid.uuid4().hex
    reply_prefix = f"{control.STATUS_REPLY_PREFIX}{request_id}/"
    deadline = time.monotonic() + timeout
    replies = {}

    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as bus:
        # Subscribe before the request goes out, so that no reply can pass unseen.
        if not bus.connect_pub(timeout=min(timeout, _BUS_CONNECT_TIMEOUT)):
            return replies, _bus_error("cannot subscribe to the master event bus")
        request = {"request_id": request_id}
        if not bus.fire_event(dict(request), control.STATUS_REQUEST_TAG):
            return replies, _bus_error("the master event bus did not take the status request")

        fired_at = time.monotonic()
        request_seen = False
        resent = False
        quiet_since = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if expected and expected <= replies.keys():
                quiet_since = quiet_since or now
                if now - quiet_since >= _EXTRA_REPLY_WAIT:
                    break
            if not (request_seen or replies or resent) and now - fired_at >= _REQUEST_RESEND_AFTER:
                log.debug("salt-nats: status request %s not seen on the bus; resending", request_id)
                bus.fire_event(dict(request), control.STATUS_REQUEST_TAG)
                resent = True

            wait = max(min(deadline - now, 0.2), 0.01)
            event = bus.get_event(wait=wait, tag=_STATUS_TAG_PREFIX, full=True)
            if not event:
                # A closed subscription returns None at once; do not spin until the deadline.
                if time.monotonic() - now < wait / 2:
                    time.sleep(wait)
                continue
            tag = event.get("tag", "")
            data = event.get("data")
            if tag == control.STATUS_REQUEST_TAG:
                if isinstance(data, dict) and data.get("request_id") == request_id:
                    request_seen = True
                continue
            if not tag.startswith(reply_prefix) or not isinstance(data, dict):
                continue
            name = tag[len(reply_prefix) :]
            report = {key: value for key, value in data.items() if not key.startswith("_")}
            pid = report.get("pid")
            known = replies.setdefault(name, [])
            # A resent request makes each instance reply twice, so keep one report per process.
            if not any(previous.get("pid") == pid for previous in known):
                known.append(report)
            quiet_since = None
    return replies, None


def _bus_error(problem):
    return (
        f"{problem} in {__opts__.get('sock_dir')}. Check that salt-master is running. "
        "Instances are shown from their status files only."
    )
