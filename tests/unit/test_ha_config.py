"""`[ha]` in the config file and the environment (keeper/ha/config.py): validated at once
with one line per problem, the DSN a secret, and nothing of it without the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account

from keeper import secrets
from keeper.cli import main
from keeper.config import load_config
from keeper.errors import ConfigError
from keeper.execution.bundles_journal import BundleBook
from keeper.ha.config import open_replica
from tests.integration.helpers import clear_keeper_env

CHAIN = '[chain]\nchain_id = 1\nhttp_urls = ["http://127.0.0.1:8545"]\n'
DSN = "postgresql://keeper:hunter2-pw@db.internal:5432/keeper"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


def config_file(tmp_path: Path, ha: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(CHAIN + ha)
    return path


def test_without_the_table_there_is_no_replica(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, ""))
    assert config.ha is None
    assert open_replica(config, 1, Account.create(), dry_run=False) is None


def test_the_table_with_its_defaults_and_the_dsn_masked(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, f'[ha]\ndsn = "{DSN}"\n'))
    assert config.ha is not None
    assert (config.ha.journal_schema, config.ha.replica, config.ha.lease_seconds) == (
        "keeper", None, 1.0)
    assert config.masked()["ha"]["dsn"] == "**********"
    assert "hunter2-pw" not in secrets.redact(f"cannot reach {DSN}")
    # A dry run keeps its own SQLite journal: no replica, no connection.
    assert open_replica(config, 1, Account.create(), dry_run=True) is None


def test_the_dsn_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_HA__DSN", DSN)
    config = load_config(config_file(tmp_path, "[ha]\nlease_seconds = 2.5\n"))
    assert config.ha is not None and config.ha.dsn.get_secret_value() == DSN
    assert config.ha.lease_seconds == 2.5


@pytest.mark.parametrize(("ha", "says"), [
    ("[ha]\n", "missing required key ha.dsn"),
    (f'[ha]\ndsn = "{DSN}"\njournal_schema = "Keeper-1"\n', "lower-case SQL identifier"),
    (f'[ha]\ndsn = "{DSN}"\nlease_seconds = 0.05\n', "ha.lease_seconds"),
    (f'[ha]\ndsn = "{DSN}"\nleader = true\n', "ha.leader"),
])
def test_bad_values_are_one_line(tmp_path: Path, ha: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(config_file(tmp_path, ha))
    message = str(error.value)
    assert says in message and "\n" not in message and "hunter2-pw" not in message


def test_bundle_mode_runs_as_replicas(tmp_path: Path, postgres: str) -> None:
    """Bundle mode's rows are in the shared journal too (tests/unit/test_bundles_journal_pg.py
    for their fencing): a replica opens on it, its bundle book empty."""
    config = load_config(config_file(tmp_path, (
        f'[execution]\nsubmitter = "bundle"\n[[execution.builders]]\nname = "b"\n'
        f'url = "http://127.0.0.1:9"\n[ha]\ndsn = "{postgres}"\n'
        'journal_schema = "ha_config_bundles"\n')))
    replica = open_replica(config, 1, Account.create(), dry_run=False)
    assert replica is not None
    try:
        assert BundleBook(replica.journal).live() == []
    finally:
        replica.journal.close()


def test_keeper_journal_says_where_a_replicas_journal_is(tmp_path: Path) -> None:
    path = config_file(tmp_path, f'[ha]\ndsn = "{DSN}"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "journal"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "in PostgreSQL ([ha])" in lines[0], result.output
    assert "hunter2-pw" not in result.output
