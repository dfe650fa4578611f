"""
Forward the events of the salt-master's event bus to NATS.

Every event is forwarded except those that carry secrets or are internal
(``salt/wheel/*/ret``, ``salt/job/*/publish``, ``cluster/*``); set
``exclude_defaults: false`` to forward those too.

Install ``salt-nats`` into Salt's Python environment (``salt-pip install salt-nats``
or ``pip install salt-nats``), then add the engine to the master config, for example
in ``/etc/salt/master.d/nats.conf``:

.. code-block:: yaml

    engines:
      - nats:
          servers:
            - nats://127.0.0.1:4222

Each event with tag ``T`` is published on ``salt.events.<T encoded>``, where every
``/`` of the tag becomes a ``.`` and ``.``, ``*``, ``>``, ``%``, whitespace and
non-ASCII characters inside a segment are percent-encoded
(``salt/job/<jid>/ret/web01.example.com`` is published on
``salt.events.salt.job.<jid>.ret.web01%2Eexample%2Ecom``). The payload is JSON
``{"tag": ..., "data": ...}`` unless ``format: msgpack`` is set.

Several instances may run side by side, each under its own name:

.. code-block:: yaml

    engines:
      - nats-audit:
          engine_module: nats
          servers: nats://nats1.example.com:4222,nats://nats2.example.com:4222
          include:
            - salt/job/*/ret/*
            - salt/auth
          format: msgpack

Every option, its type and default are listed in the configuration page of the
documentation (``python -m salt_nats.config`` prints the table).
"""

import logging

log = logging.getLogger(__name__)

__virtualname__ = "nats"

try:
    from salt_nats.service import run_engine

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # nats-py or msgpack missing from Salt's environment
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)


def __virtual__():
    if not HAS_LIBS:
        return (
            False,
            f"The nats engine cannot load: {IMPORT_ERROR}. Install salt-nats into Salt's "
            "Python environment, for example with: salt-pip install salt-nats",
        )
    return __virtualname__


def start(**kwargs):
    """
    Run the engine until the master stops it. ``kwargs`` are the options of the
    ``engines:`` entry.
    """
    run_engine(__opts__, kwargs)
