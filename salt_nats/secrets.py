"""Resolve secret options and check the authentication and TLS files before connecting.

A secret option (``user``, ``password``, ``token``, ``nkeys_seed``, ``creds``) may be
given in three ways:

* inline, as the value itself;
* as a file: ``password_file`` and ``token_file``, a ``file:///absolute/path`` value
  of ``password`` or ``token``, or a path in ``nkeys_seed`` and ``creds``;
* as Salt's ``sdb://<profile>/<key>`` URI, resolved here with
  ``salt.utils.sdb.sdb_get`` and the profiles in the calling process's Salt config.

Salt 3008.4 resolves ``sdb://`` URIs in the master and minion config files itself
when it loads them (``salt.config.apply_sdb``), so an engine option usually arrives
resolved. :func:`resolve_secrets` covers the values that Salt does not resolve, such
as pillar data and command-line arguments, and reports a URI whose profile is
missing, which Salt leaves in place without a word.

Files are read here once to check them and again at each connect (see
:mod:`salt_nats.connection`), so a rotated secret is picked up without a restart.
Every error names the option and the path or URI, never the secret.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import re
import ssl
import stat
from collections.abc import Mapping
from typing import Any

from salt_nats.config import (
    CREDS_JWT_MARKER,
    CREDS_SEED_MARKER,
    FILE_PREFIX,
    SDB_PREFIX,
    ConfigError,
    EngineSettings,
    check_auth_options,
    looks_like_creds,
    looks_like_seed,
    parse_option,
)
from salt_nats.connection import ssl_context

log = logging.getLogger(__name__)

# Options whose value may be an sdb:// URI.
SDB_OPTIONS = ("user", "password", "token", "nkeys_seed", "creds")

# Largest secret, credentials or certificate file read, in bytes. It guards against
# a path that names a device or a log file by mistake.
MAX_FILE_BYTES = 1024 * 1024

_JWT_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def resolve_secrets(settings: EngineSettings, opts: Mapping[str, Any] | None) -> EngineSettings:
    """Resolve the ``sdb://`` secrets of ``settings`` and check every file it names.

    ``opts`` is the Salt config of the calling process (``__opts__``), which contains
    the sdb profiles: the master config in the engine and the runner, the minion config
    in the execution module. It may be None when no option is an ``sdb://`` URI.

    Returns a copy of ``settings`` with each URI replaced by its value. Raises
    :class:`ConfigError` for a URI that cannot be resolved, a file that is missing,
    unreadable or empty, a seed or credentials file that nats-py cannot use, a
    certificate or key that does not load, and options that do not combine.
    """
    check_auth_options(settings)

    resolved = {}
    for key in SDB_OPTIONS:
        value = getattr(settings, key)
        if value.startswith(SDB_PREFIX):
            resolved[key] = _resolve_sdb(key, value, opts)
    if resolved:
        settings = dataclasses.replace(settings, **resolved)
        check_auth_options(settings)

    _check_secret_files(settings)
    _check_nkeys(settings)
    _check_tls(settings)
    return settings


# -- sdb ---------------------------------------------------------------------------------


def _resolve_sdb(key: str, uri: str, opts: Mapping[str, Any] | None) -> str:
    if opts is None:
        raise ConfigError(
            key,
            uri,
            f"the sdb URI {uri} cannot be resolved without the Salt config",
            "pass the Salt opts to resolve_secrets()",
        )

    import salt.utils.sdb  # Salt is present wherever opts are

    fix = f"define the sdb profile of {uri} in the Salt config and store the secret under its key"
    try:
        value = salt.utils.sdb.sdb_get(uri, opts, strict=True)
    except Exception as exc:  # each sdb driver raises its own errors
        raise ConfigError(
            key, uri, f"reading the sdb URI {uri} failed: {type(exc).__name__}: {exc}", fix
        ) from None

    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a numeric password in a YAML sdb file
    if not isinstance(value, str) or not value:
        returned = "no value" if value in (None, "") else f"a {type(value).__name__}, not a string"
        raise ConfigError(key, uri, f"the sdb URI {uri} returned {returned}", fix)
    if value.startswith(SDB_PREFIX):
        raise ConfigError(
            key, uri, f"the sdb URI {uri} returned another sdb URI", "store the secret itself"
        )

    try:
        return parse_option(key, value)
    except ConfigError as exc:
        # The message of exc may show the value, which is the secret here.
        raise ConfigError(
            key, uri, f"the value of the sdb URI {uri} is invalid for {key}", exc.fix
        ) from None


# -- files -------------------------------------------------------------------------------


def read_checked_file(key: str, path: str, *, secret: bool = True) -> str:
    """Return the text of the file that option ``key`` names, or raise ConfigError.

    The error names ``key`` and ``path`` and states why the file cannot be used. A
    secret file that every user can read is logged as a warning.
    """
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(key, path, "not a regular file", f"set {key} to a file")
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            key, path, "file not found", f"create {path} or correct the path in {key}"
        ) from None
    except PermissionError:
        raise ConfigError(
            key,
            path,
            f"permission denied for user {_process_user()}",
            f"let the user that runs Salt read {path}, for example with chown or chmod",
        ) from None
    except IsADirectoryError:
        raise ConfigError(key, path, "is a directory", f"set {key} to a file") from None
    except OSError as exc:
        raise ConfigError(key, path, f"cannot be read: {exc.strerror}", "check the path") from None

    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            key, path, f"larger than {MAX_FILE_BYTES} bytes", f"check that {key} names the file"
        )
    if not data.strip():
        raise ConfigError(key, path, "the file is empty", f"write the value of {key} into {path}")
    if secret and info.st_mode & stat.S_IROTH:
        log.warning(
            "salt-nats: %s file %s is readable by every user; restrict it with chmod o-r",
            key,
            path,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            key, path, "not UTF-8 text", f"check that {key} names the right file"
        ) from None


def _process_user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _check_secret_files(settings: EngineSettings) -> None:
    for key in ("password", "token"):
        inline = getattr(settings, key)
        path = getattr(settings, f"{key}_file")
        if path:
            read_checked_file(f"{key}_file", path)
        elif inline.startswith(FILE_PREFIX):
            read_checked_file(key, inline[len(FILE_PREFIX) :])


# -- NKEY seeds and credentials ------------------------------------------------------------


def _check_nkeys(settings: EngineSettings) -> None:
    if settings.nkeys_seed:
        seed = settings.nkeys_seed
        if looks_like_seed(seed):
            _check_user_seed("nkeys_seed", seed, "the seed")
        else:
            text = read_checked_file("nkeys_seed", seed)
            _check_user_seed("nkeys_seed", text, f"the file {seed}")

    if settings.creds:
        creds = settings.creds
        if looks_like_creds(creds):
            _check_creds(creds, "the credentials text")
        else:
            _check_creds(read_checked_file("creds", creds), f"the file {creds}")


def _check_user_seed(key: str, text: str, source: str) -> None:
    # The seed is never part of a message; ConfigError hides the value of these keys.
    seed = text.strip()
    fix = f"{key} needs a user seed (starting with SU), as `nsc` or `nk -gen user` write it"
    if not looks_like_seed(seed):
        raise ConfigError(key, "", f"{source} does not contain an NKEY seed", fix)
    if not seed.startswith("SU"):
        raise ConfigError(key, "", f"{source} contains a seed that is not a user seed", fix)

    try:
        import nkeys
    except ImportError:
        raise ConfigError(
            key,
            "",
            "NKEY authentication needs the nkeys package, which is not installed",
            "install it into Salt's Python environment: salt-pip install nkeys",
        ) from None
    try:
        key_pair = nkeys.from_seed(bytearray(seed.encode()))
    except Exception:  # nkeys raises its own errors and binascii's
        raise ConfigError(key, "", f"{source} contains an invalid NKEY seed", fix) from None
    key_pair.wipe()


def _check_creds(text: str, source: str) -> None:
    """Check the two parts of a credentials file the way nats-py reads them.

    nats-py takes the line right after each ``-----BEGIN ...-----`` line.
    """
    lines = text.splitlines()
    fix = "use the .creds file that `nsc generate creds` or `nats auth user credential` wrote"
    jwt = _line_after(lines, CREDS_JWT_MARKER)
    if jwt is None or not _JWT_RE.match(jwt.strip()):
        raise ConfigError(
            "creds", "", f"{source} has no user JWT after a '{CREDS_JWT_MARKER}' line", fix
        )
    seed = _line_after(lines, CREDS_SEED_MARKER)
    if seed is None:
        raise ConfigError(
            "creds", "", f"{source} has no NKEY seed after a '{CREDS_SEED_MARKER}' line", fix
        )
    _check_user_seed("creds", seed, source)


def _line_after(lines: list[str], marker: str) -> str | None:
    for index, line in enumerate(lines[:-1]):
        if marker in line:
            return lines[index + 1]
    return None


# -- TLS ---------------------------------------------------------------------------------


def _check_tls(settings: EngineSettings) -> None:
    if settings.tls_ca_file:
        ca_text = read_checked_file("tls_ca_file", settings.tls_ca_file, secret=False)
        if "-----BEGIN CERTIFICATE-----" not in ca_text:
            raise ConfigError(
                "tls_ca_file",
                settings.tls_ca_file,
                "contains no PEM certificate",
                "set tls_ca_file to the CA certificate in PEM format",
            )
    if settings.tls_cert_file:
        cert_text = read_checked_file("tls_cert_file", settings.tls_cert_file, secret=False)
        if "-----BEGIN CERTIFICATE-----" not in cert_text:
            raise ConfigError(
                "tls_cert_file",
                settings.tls_cert_file,
                "contains no PEM certificate",
                "set tls_cert_file to the client certificate in PEM format",
            )
        key_text = read_checked_file("tls_key_file", settings.tls_key_file)
        if "PRIVATE KEY-----" not in key_text:
            raise ConfigError(
                "tls_key_file",
                settings.tls_key_file,
                "contains no PEM private key",
                "set tls_key_file to the client certificate's key in PEM format",
            )
        if "ENCRYPTED" in key_text:
            raise ConfigError(
                "tls_key_file",
                settings.tls_key_file,
                "the private key is encrypted with a passphrase",
                "store the key unencrypted, readable only by the user that runs Salt",
            )

    if settings.tls_ca_file:
        try:
            ssl.create_default_context(cafile=settings.tls_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                "tls_ca_file",
                settings.tls_ca_file,
                f"loading the CA certificates failed: {_ssl_reason(exc)}",
                "set tls_ca_file to the CA certificate in PEM format",
            ) from None

    try:
        ssl_context(settings)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = _ssl_reason(exc)
        if "KEY_VALUES_MISMATCH" in reason:
            problem = "the key does not belong to the certificate in tls_cert_file"
        else:
            problem = f"loading the certificate and key failed: {reason}"
        raise ConfigError(
            "tls_key_file",
            settings.tls_key_file,
            problem,
            "set tls_cert_file and tls_key_file to a PEM certificate and its own key",
        ) from None


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)
