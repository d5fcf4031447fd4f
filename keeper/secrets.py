"""Account keys and the registry of secret strings that must never be printed.

The key comes from `KEEPER_ACCOUNT__PRIVATE_KEY` (a `SecretStr`) or from an
encrypted JSON keystore plus a password file. Every secret seen here (the key,
with and without `0x`, and the keystore password) is registered, and `redact`
replaces registered secrets in any text: the log processor and the CLI error
wrapper run every line through it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pydantic import SecretStr

from keeper.errors import ConfigError

MASK = "**********"
PRIVATE_KEY_ENV = "KEEPER_ACCOUNT__PRIVATE_KEY"
SEARCHER_KEY_ENV = "KEEPER_ACCOUNT__SEARCHER_KEY"  # the bundle signature header's identity
LANE_KEYS_ENV = "KEEPER_ACCOUNT__LANE_KEYS"  # a JSON list: the nonce lanes' signing keys
_MIN_SECRET_LEN = 4  # shorter strings would mask half of every log line
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_KEYLIKE_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{16,}$")
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""n of secp256k1 (SEC 2, 2.4.1): a private key is an integer in [1, n - 1]."""


class _Registry:
    """The secrets seen so far and one compiled pattern matching any of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            parts = []
            for known in sorted(self._secrets, key=len, reverse=True):
                if re.fullmatch(r"[0-9a-f]{64}", known):
                    parts.append(f"(?i:(?:0x)?{known})")
                else:
                    parts.append(re.escape(known))
            self.pattern = re.compile("|".join(parts))

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self.pattern = None


_registry = _Registry()


def register_secret(value: str | bytes | SecretStr | None) -> None:
    """Remember a secret so that `redact` masks it; hex keys match with or without 0x."""
    if value is None:
        return
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.hex()
    value = value.strip()
    if _HEX_KEY.match(value):
        value = value.removeprefix("0x").lower()
    if len(value) >= _MIN_SECRET_LEN:
        _registry.add(value)


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    _registry.clear()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `**********`."""
    pattern = _registry.pattern
    if pattern is None:
        return text
    return pattern.sub(MASK, text)


def register_env_secrets() -> None:
    """Register the keys from the environment before anything can print them."""
    for name, value in os.environ.items():
        if name.upper() in (PRIVATE_KEY_ENV, SEARCHER_KEY_ENV):
            register_secret(value)
        elif name.upper() == LANE_KEYS_ENV:
            register_secret(value)
            for key in re.findall(r"(?:0x)?[0-9a-fA-F]{64}", value):
                register_secret(key)


def redact_url(url: str) -> str:
    """A URL fit for messages: password, query values and key-like path segments masked.

    Hosted RPC URLs carry API keys in the path (`/v2/<key>`) or the query.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    path = "/".join(
        MASK if _KEYLIKE_SEGMENT.match(segment) and any(c.isdigit() for c in segment) else segment
        for segment in parts.path.split("/")
    )
    query = urllib.parse.urlencode(
        [(key, MASK) for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return redact(urllib.parse.urlunsplit((parts.scheme, netloc, path, query, parts.fragment)))


def account_from_key(key: SecretStr, where: str = PRIVATE_KEY_ENV) -> LocalAccount:
    """The account of a hex private key (registered as a secret first); `where` names it
    in errors."""
    account: LocalAccount = Account.from_key(check_key(key, where))
    return account


def check_key(key: SecretStr, where: str) -> str:
    """The key's hex text (registered as a secret first) if it is a valid private key, else
    one `ConfigError` line naming `where`."""
    register_secret(key)
    raw = key.get_secret_value().strip()
    if not _HEX_KEY.match(raw):
        raise ConfigError(
            f"{where}: a private key must be 32 bytes of hex (64 hex digits, optional 0x)"
        )
    check_key_range(int(raw.removeprefix("0x"), 16), where)
    return raw


def check_key_range(key: int, where: str) -> None:
    """A `ConfigError` unless 1 <= key < n (secp256k1's order): eth-keys would raise a bare
    ValueError on zero or on a value past the order."""
    if key == 0:
        raise ConfigError(f"{where}: the private key is zero, which is not a valid key")
    if key >= SECP256K1_ORDER:
        raise ConfigError(
            f"{where}: the private key is not below the secp256k1 curve order, so it is not "
            "a valid key"
        )


def read_password(password_file: Path) -> str:
    """The keystore password: the file's text without the trailing newline."""
    try:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise ConfigError(f"account.password_file: file not found: {password_file}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"account.password_file: cannot read {password_file}: {_reason(exc)}"
        ) from None
    register_secret(password)
    return password


def read_keystore(keystore: Path) -> dict[str, object]:
    """The parsed JSON keystore, or a ConfigError naming the file."""
    try:
        text = keystore.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"account.keystore: file not found: {keystore}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"account.keystore: cannot read {keystore}: {_reason(exc)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"account.keystore: {keystore} is not a JSON keystore "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("crypto", data.get("Crypto")), dict):
        raise ConfigError(
            f"account.keystore: {keystore} is not a JSON keystore (no crypto section)"
        )
    return data


def keystore_address(keystore: Path) -> str | None:
    """The checksummed address stored in the keystore's `address` field, if any."""
    address = read_keystore(keystore).get("address")
    if not isinstance(address, str):
        return None
    try:
        return str(to_checksum_address("0x" + address.removeprefix("0x")))
    except ValueError:
        return None


def account_from_keystore(keystore: Path, password_file: Path) -> LocalAccount:
    """Decrypt the keystore with the password file; the decrypted key is registered."""
    data = read_keystore(keystore)
    password = read_password(password_file)
    try:
        key = Account.decrypt(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise ConfigError(
                f"account.password_file: wrong password for keystore {keystore}"
            ) from None
        raise ConfigError(
            f"account.keystore: cannot decrypt {keystore}: {redact(str(exc))}"
        ) from None
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"account.keystore: {keystore} is not a valid keystore (bad field {exc})"
        ) from None
    register_secret(bytes(key))
    check_key_range(int.from_bytes(bytes(key), "big"), f"account.keystore {keystore}")
    account: LocalAccount = Account.from_key(key)
    return account


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
