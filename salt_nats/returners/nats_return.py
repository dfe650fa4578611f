"""
Publish job returns and master events to NATS, and keep the master job cache in
JetStream key-value buckets.

Install ``salt-nats`` into Salt's Python environment on every host that runs the
returner (``salt-pip install salt-nats``). The options are read the way Salt reads
every returner's options: a ``nats:`` mapping in the minion or master config (or in
pillar, for minions), ``nats.<option>`` keys, ``--return_config`` profiles and
``--return_kwargs``:

.. code-block:: yaml

    nats:
      servers:
        - nats://nats1.example.com:4222
      timeout: 5

Job returns, published by the minion on
``salt.returns.<minion id>.<function>.<jid>``, each field one encoded token:

.. code-block:: bash

    salt '*' test.ping --return nats
    salt '*' test.ping --return nats --return_config alternative
    salt '*' test.ping --return nats --return_kwargs '{"subject_prefix": "ops.returns"}'

or for every job of a minion, in its config:

.. code-block:: yaml

    return: nats

Master events, published by the master's event return process on the engine's
subjects (``salt.events.<tag>``), with a bounded buffer for NATS outages:

.. code-block:: yaml

    event_return: nats

The master job cache, kept in the buckets ``salt_jobs`` and ``salt_job_returns``
(created on first use, entries expire after ``keep_jobs_seconds``):

.. code-block:: yaml

    master_job_cache: nats

On the master, with ``master_job_cache: nats``, ``returner()`` stores returns in the
job cache; everywhere else it publishes them. Every option, the subjects, the key
layout and the behaviour during a NATS outage are described in the returner page of
the documentation.
"""

import logging

import salt.exceptions
import salt.returners
import salt.utils.jid
import salt.utils.job
import salt.utils.minions

log = logging.getLogger(__name__)

__virtualname__ = "nats"

try:
    from salt_nats import jobcache
    from salt_nats import returner as nats_returner
    from salt_nats.config import ConfigError

    HAS_LIBS = True
    IMPORT_ERROR = ""
except ImportError as exc:  # nats-py or msgpack missing from Salt's environment
    HAS_LIBS = False
    IMPORT_ERROR = str(exc)

# Attempts at a fresh jid before prep_jid gives up, as local_cache does.
_JID_ATTEMPTS = 5


def __virtual__():
    if not HAS_LIBS:
        return (
            False,
            f"The nats returner cannot load: {IMPORT_ERROR}. Install salt-nats into "
            "Salt's Python environment, for example with: salt-pip install salt-nats",
        )
    return __virtualname__


def _options(ret=None):
    salt_functions = __salt__ if "config.option" in __salt__ else {}
    if not salt_functions:
        # Without config.option, get_returner_options would read an option missing
        # from the `nats` mapping at the top level of __opts__, where `timeout` is
        # Salt's own option. This lookup reads whole keys only, such as `nats.timeout`.
        salt_functions = {"config.option": lambda key, default=None: __opts__.get(key, default)}
    attrs = {name: name for name in nats_returner.OPTION_NAMES}
    return salt.returners.get_returner_options(
        __virtualname__, ret, attrs, __salt__=salt_functions, __opts__=__opts__
    )


def _is_master_job_cache():
    return __opts__.get("__role") == "master" and __opts__.get("master_job_cache") == "nats"


def _job_cache():
    # One JobCache per loader, so options are read once and recent jobs are remembered.
    cache = __context__.get("nats.job_cache")
    if cache is None:
        cache = jobcache.JobCache(
            _options(),
            keep_jobs_seconds=salt.utils.job.get_keep_jobs_seconds(__opts__),
            node_id=__opts__.get("id", "master"),
            salt_opts=__opts__,
        )
        __context__["nats.job_cache"] = cache
    return cache


def returner(ret):
    """
    Publish a job return, or store it when this master's job cache is ``nats``.
    """
    if _is_master_job_cache():
        if ret.get("jid") == "req":
            ret["jid"] = prep_jid(nocache=ret.get("nocache", False))
        _job_cache().save_return(ret)
        return

    try:
        settings = nats_returner.load_settings(_options(ret), __opts__)
    except ConfigError as exc:
        log.error(
            "salt-nats returner: return of job %s from minion %s not published: %s",
            ret.get("jid"),
            ret.get("id"),
            exc,
        )
        return

    master_id = __opts__.get("id") if __opts__.get("__role") == "master" else ret.get("master_id")
    nats_returner.publish_return(
        settings, ret, master_id=master_id, node_id=__opts__.get("id", "minion")
    )


def event_return(events):
    """
    Publish master events; events wait in a bounded buffer while NATS is unreachable.
    """
    # The settings, or the error that makes them invalid, are read once per loader.
    settings = __context__.get("nats.event_return_settings")
    if settings is None:
        try:
            settings = nats_returner.load_settings(_options(), __opts__)
        except ConfigError as exc:
            settings = exc
        __context__["nats.event_return_settings"] = settings
    nats_returner.event_return(settings, events, master_id=__opts__.get("id", "master"))


def prep_jid(nocache=False, passed_jid=None, recurse_count=0):  # pylint: disable=unused-argument
    """
    Store the job marker and return the jid. A generated jid that is taken already
    is replaced by a new one.
    """
    cache = _job_cache()
    for _attempt in range(_JID_ATTEMPTS):
        jid = passed_jid or salt.utils.jid.gen_jid(__opts__)
        if cache.prep_jid(jid, nocache, generated=passed_jid is None) or passed_jid:
            return jid
    raise salt.exceptions.SaltCacheError(
        f"prep_jid failed: {_JID_ATTEMPTS} generated jids in a row were taken already in the "
        "nats job cache. If several masters share the buckets, set unique_jid: True in "
        "their config"
    )


def save_load(jid, clear_load, minions=None, recurse_count=0):  # pylint: disable=unused-argument
    """
    Save a job's load, and its minion list when it has a target.

    A load that contains a ``return`` is a minion's return standing in for a
    missing load, so it never replaces a stored load.
    """
    if minions is None and clear_load.get("tgt", "") != "":
        checked = salt.utils.minions.CkMinions(__opts__).check_minions(
            clear_load["tgt"], clear_load.get("tgt_type", "glob")
        )
        minions = checked["minions"]
    _job_cache().save_load(jid, clear_load, minions, keep_existing="return" in clear_load)


def save_minions(jid, minions, syndic_id=None):  # pylint: disable=unused-argument
    """
    Add minions to a job's minion list.
    """
    _job_cache().save_minions(jid, minions)


def get_load(jid):
    """
    Return a job's load with its ``Minions``, or ``{}``.
    """
    return _job_cache().get_load(jid)


def get_jid(jid):
    """
    Return the stored returns of a job, keyed by minion id.
    """
    return _job_cache().get_jid(jid)


def get_fun(fun):
    """
    Return each minion's return from the latest job that ran ``fun``.
    """
    return _job_cache().get_fun(fun)


def get_jids():
    """
    Return every job, formatted as ``jobs.list_jobs`` shows it.
    """
    cache = _job_cache()
    jobs = {
        jid: salt.utils.jid.format_jid_instance(jid, load)
        for jid, load in cache.list_loads().items()
    }
    if __opts__.get("job_cache_store_endtime"):
        for jid, end_time in cache.list_endtimes().items():
            if jid in jobs and end_time:
                jobs[jid]["EndTime"] = end_time
    return jobs


def get_jids_filter(count, filter_find_job=True):
    """
    Return the ``count`` most recent jobs, oldest first, optionally without
    ``saltutil.find_job`` jobs.
    """
    jobs = []
    for jid, load in sorted(_job_cache().list_loads().items()):
        job = salt.utils.jid.format_jid_instance_ext(jid, load)
        if filter_find_job and job["Function"] == "saltutil.find_job":
            continue
        jobs.append(job)
    return jobs[-count:] if count > 0 else []


def get_minions():
    """
    Return the ids of the minions that have stored returns.
    """
    return _job_cache().get_minions()


def update_endtime(jid, time):
    """
    Store a job's end time.
    """
    _job_cache().update_endtime(jid, time)


def get_endtime(jid):
    """
    Return a job's end time, or False.
    """
    return _job_cache().get_endtime(jid)


def clean_old_jobs():
    """
    Remove jobs older than ``keep_jobs_seconds`` and what remains of expired jobs.
    """
    _job_cache().clean_old_jobs()
