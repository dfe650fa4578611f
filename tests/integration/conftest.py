"""A ready-made salt-master and salt-minion pair, without the salt-nats engine.

Each test module that requests these fixtures gets its own pair, started once and
stopped when the module ends. Modules that need the engine build their own master
with ``make_master(engine_config=...)``, as ``tests/conftest.py`` describes.
"""

from __future__ import annotations

from typing import Any

import pytest
from saltfactories.daemons.master import SaltMaster
from saltfactories.daemons.minion import SaltMinion

MINION_ID = "web01.example.com"


@pytest.fixture(scope="module")
def salt_master(make_master: Any) -> SaltMaster:
    """A started salt-master without the nats engine."""
    return make_master()


@pytest.fixture(scope="module")
def salt_minion(make_minion: Any, salt_master: SaltMaster) -> SaltMinion:
    """A started salt-minion with the id ``web01.example.com``, connected to ``salt_master``."""
    return make_minion(salt_master, MINION_ID)


@pytest.fixture(scope="module")
def salt_cli(salt_master: SaltMaster) -> Any:
    """The ``salt`` command for ``salt_master``; ``salt_cli.run("test.ping", minion_tgt=...)``."""
    return salt_master.salt_cli(timeout=30)


@pytest.fixture(scope="module")
def salt_run_cli(salt_master: SaltMaster) -> Any:
    """The ``salt-run`` command for ``salt_master``."""
    return salt_master.salt_run_cli(timeout=30)


@pytest.fixture(scope="module")
def salt_call_cli(salt_minion: SaltMinion) -> Any:
    """The ``salt-call`` command for ``salt_minion``."""
    return salt_minion.salt_call_cli(timeout=30)
