"""NKEYs, NATS JWTs and credentials files for tests of NKEY and operator-mode auth.

Operator mode chains three keys: the operator signs account JWTs, and an account
signs the JWTs of its users. The server trusts the operator JWT from its config and
finds account JWTs through its resolver. A client proves that it is the user by
sending the user JWT and a signature of the server's nonce, made with the user's seed.

The JWTs follow the NATS v2 format: a header ``{"typ": "JWT", "alg": "ed25519-nkey"}``,
claims with ``iss`` (the signer's public key), ``sub`` (the subject's public key) and
a ``nats`` object, and an Ed25519 signature of ``<header>.<claims>``, all three parts
base64url without padding. Limits of -1 mean no limit; nats-server reads a missing
limit as 0, which would allow no connections at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

NO_LIMITS = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}


@dataclass(frozen=True)
class NKey:
    """One key pair: the seed (secret) and the public key, both encoded as text."""

    seed: str
    public_key: str

    def sign(self, data: bytes) -> bytes:
        key_pair = nkeys.from_seed(bytearray(self.seed.encode()))
        try:
            return key_pair.sign(data)
        finally:
            key_pair.wipe()


def make_nkey(prefix: int) -> NKey:
    """Return a new key pair of the type that ``prefix`` selects (nkeys.PREFIX_BYTE_*)."""
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    key_pair = nkeys.from_seed(bytearray(seed))
    public_key = key_pair.public_key.decode()
    key_pair.wipe()
    return NKey(seed.decode(), public_key)


def make_user_nkey() -> NKey:
    return make_nkey(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(issuer: NKey, subject: str, name: str, nats: dict[str, Any]) -> str:
    """Return a JWT with the given claims, signed by ``issuer``."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    # nats-server treats jti as an opaque id; the Go library derives it from the claims.
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")

    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(issuer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


def creds_text(user_jwt: str, user: NKey) -> str:
    """Return a credentials file's text: the user JWT and the user's seed, each framed."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n"
        "\n"
        "Test credentials of salt-nats. The seed below is secret.\n"
        "\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n"
    )


@dataclass(frozen=True)
class User:
    """A user of an account: its key pair, JWT and credentials file."""

    nkey: NKey
    jwt: str
    creds_file: Path

    @property
    def creds_text(self) -> str:
        return self.creds_file.read_text(encoding="ascii")


@dataclass(frozen=True)
class OperatorSetup:
    """An operator, one account and its users, and the nats-server config that trusts them."""

    operator_jwt: str
    account: NKey
    account_jwt: str
    users: dict[str, User]

    def server_config(self) -> str:
        """Return nats-server config lines for operator mode with a memory resolver."""
        return (
            f'operator: "{self.operator_jwt}"\n'
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f'  {self.account.public_key}: "{self.account_jwt}"\n'
            "}\n"
        )


def make_operator_setup(directory: Path, user_names: tuple[str, ...]) -> OperatorSetup:
    """Create an operator, an account ``SALT`` and one user per name, with creds files.

    Each user's creds file is ``<directory>/<name>.creds``, readable by the owner only.
    A further user ``stranger`` belongs to an account that the server does not know.
    """
    directory.mkdir(parents=True, exist_ok=True)
    operator = make_nkey(nkeys.PREFIX_BYTE_OPERATOR)
    operator_jwt = encode_jwt(operator, operator.public_key, "salt-nats-test", {"type": "operator"})

    account = make_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    account_jwt = encode_jwt(
        operator, account.public_key, "SALT", {"type": "account", "limits": NO_LIMITS}
    )
    unknown_account = make_nkey(nkeys.PREFIX_BYTE_ACCOUNT)

    users = {}
    for name in (*user_names, "stranger"):
        signer = unknown_account if name == "stranger" else account
        user = make_user_nkey()
        user_jwt = encode_jwt(
            signer,
            user.public_key,
            name,
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        )
        creds_file = directory / f"{name}.creds"
        creds_file.touch(mode=0o600)
        creds_file.write_text(creds_text(user_jwt, user), encoding="ascii")
        users[name] = User(user, user_jwt, creds_file)

    return OperatorSetup(operator_jwt, account, account_jwt, users)
