"""Key loading (env key, keystore + password file) and the redaction registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from keeper import secrets
from keeper.errors import ConfigError

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    secrets.clear_secrets()
    yield
    secrets.clear_secrets()


def make_keystore(tmp_path: Path, password: str = PASSWORD) -> tuple[Path, Path]:
    keystore = tmp_path / "key.json"
    keystore.write_text(
        json.dumps(Account.encrypt(bytes.fromhex(KEY), password, kdf="pbkdf2", iterations=2))
    )
    password_file = tmp_path / "password.txt"
    password_file.write_text(password + "\n")
    return keystore, password_file


def test_redact_hex_key_any_form() -> None:
    secrets.register_secret("0x" + KEY)
    text = f"a {KEY} b 0x{KEY} c {KEY.upper()} d 0X{KEY}"
    redacted = secrets.redact(text)
    assert KEY not in redacted.lower()
    assert redacted.startswith("a ********** b ********** c ********** d ")


def test_redact_bytes_and_secretstr() -> None:
    secrets.register_secret(bytes.fromhex(KEY))
    assert secrets.redact(KEY) == secrets.MASK
    secrets.clear_secrets()
    secrets.register_secret(SecretStr("hunter2-password"))
    assert secrets.redact("pw=hunter2-password!") == "pw=**********!"


def test_short_and_empty_values_are_not_registered() -> None:
    secrets.register_secret("")
    secrets.register_secret("abc")
    secrets.register_secret(None)
    assert secrets.redact("abc abc") == "abc abc"


def test_register_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", KEY)
    secrets.register_env_secrets()
    assert secrets.redact("0x" + KEY) == secrets.MASK


def test_account_from_key() -> None:
    account = secrets.account_from_key(SecretStr("0x" + KEY))
    assert account.address == ADDRESS
    assert secrets.redact(KEY) == secrets.MASK


def test_bad_key_message_has_no_key() -> None:
    bad = KEY[:-2] + "zz"
    with pytest.raises(ConfigError) as info:
        secrets.account_from_key(SecretStr(bad))
    assert "KEEPER_ACCOUNT__PRIVATE_KEY" in str(info.value) and bad not in str(info.value)


def test_keystore_roundtrip(tmp_path: Path) -> None:
    keystore, password_file = make_keystore(tmp_path)
    assert secrets.keystore_address(keystore) == ADDRESS
    account = secrets.account_from_keystore(keystore, password_file)
    assert account.address == ADDRESS
    assert secrets.redact(f"{KEY} {PASSWORD}") == f"{secrets.MASK} {secrets.MASK}"


def test_wrong_password_names_keystore(tmp_path: Path) -> None:
    keystore, password_file = make_keystore(tmp_path)
    password_file.write_text("wrong password\n")
    with pytest.raises(ConfigError) as info:
        secrets.account_from_keystore(keystore, password_file)
    assert "wrong password" in str(info.value) and str(keystore) in str(info.value)


def test_missing_keystore(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"account\.keystore: file not found: .*nope\.json"):
        secrets.account_from_keystore(tmp_path / "nope.json", tmp_path / "pw")


def test_keystore_not_json(tmp_path: Path) -> None:
    keystore = tmp_path / "key.json"
    keystore.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not a JSON keystore \(line 1"):
        secrets.account_from_keystore(keystore, tmp_path / "pw")


def test_json_but_not_keystore(tmp_path: Path) -> None:
    keystore = tmp_path / "key.json"
    keystore.write_text('{"address": "00"}')
    with pytest.raises(ConfigError, match="no crypto section"):
        secrets.read_keystore(keystore)


def test_missing_password_file(tmp_path: Path) -> None:
    keystore, _ = make_keystore(tmp_path)
    with pytest.raises(ConfigError, match=r"account\.password_file: file not found: .*absent"):
        secrets.account_from_keystore(keystore, tmp_path / "absent")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        (
            "https://eth-mainnet.g.alchemy.com/v2/AbCdEf0123456789xyzKEY",
            "https://eth-mainnet.g.alchemy.com/v2/**********",
        ),
        ("https://user:pa55word@rpc.example/", "https://user:**********@rpc.example/"),
        ("https://rpc.example/?apikey=s3cr3t", "https://rpc.example/?apikey=**********"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert secrets.redact_url(url) == shown
