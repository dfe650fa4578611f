"""
Drop-in for ``salt://_engines``: the nats engine from the installed salt-nats package.

Copy this file to ``_engines/`` in your ``file_roots`` and run
``salt-run saltutil.sync_engines`` when you deploy engines through the file server.
The ``salt-nats`` package must still be installed in Salt's Python environment; a
plain ``pip install`` of the package makes this file unnecessary.
"""

__virtualname__ = "nats"

try:
    from salt_nats.service import run_engine

    IMPORT_ERROR = ""
except ImportError as exc:
    IMPORT_ERROR = str(exc)


def __virtual__():
    if IMPORT_ERROR:
        return (
            False,
            f"The nats engine needs the salt-nats package: {IMPORT_ERROR}. Install it with: "
            "salt-pip install salt-nats",
        )
    return __virtualname__


def start(**kwargs):
    """Run the engine until the master stops it."""
    run_engine(__opts__, kwargs)
