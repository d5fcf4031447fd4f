"""Bad input at start-up is one `keeper: error:` line and exit 2 (issue 19, safety): a
misspelt `KEEPER_<SECTION>__<KEY>` variable, an out-of-range private key, `--config`
after the command, read-only commands without a key in live mode, a closed stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keeper import cli, secrets
from keeper.execution.journal import Journal
from keeper.log import reset_logging
from keeper.secrets import SECP256K1_ORDER

CONFIG = """\
[chain]
chain_id = 1
http_urls = ["http://127.0.0.1:9"]

[execution]
mode = "{mode}"

[strategies.aave_v3]
addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"
"""


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if (name.upper().startswith("KEEPER_") and "__" in name) or name.upper() == "KEEPER_CONFIG":
            monkeypatch.delenv(name)
    secrets.clear_secrets()
    yield
    reset_logging()
    secrets.clear_secrets()


def config_file(tmp_path: Path, mode: str = "dry-run") -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG.format(mode=mode))
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keeper: error: "), lines
    return lines[0]


def test_misspelt_section_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_EXECUTON__MODE", "live")
    line = one_error_line(invoke("--config", str(config_file(tmp_path)), "check-config",
                                 "--offline"))
    assert "KEEPER_EXECUTON__MODE" in line and "KEEPER_EXECUTION__MODE" in line


def test_misspelt_strategy_key_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVE_V3__START_BLOK", "5")
    line = one_error_line(invoke("check-config", "--offline", str(config_file(tmp_path))))
    assert "strategies.aave_v3.start_blok" in line and "START_BLOCK" in line


def test_misspelt_strategy_name_variable_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVEV3__START_BLOCK", "5")
    line = one_error_line(invoke("check-config", "--offline", str(config_file(tmp_path))))
    assert "environment KEEPER_STRATEGIES__AAVEV3__START_BLOCK" in line
    assert "did you mean KEEPER_STRATEGIES__AAVE_V3__START_BLOCK?" in line


def test_a_chains_variable_says_the_environment_applies_to_every_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not 'did you mean KEEPER_CHAIN__A__...', which names no setting either."""
    monkeypatch.setenv("KEEPER_CHAINS__A__EXECUTION__MODE", "live")
    line = one_error_line(invoke("check-config", "--offline", str(config_file(tmp_path))))
    assert "environment KEEPER_CHAINS__A__EXECUTION__MODE: [chains.<name>]" in line
    assert "applies to every chain (KEEPER_EXECUTION__MODE)" in line


def test_other_keeper_variables_stay_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_HOME", str(Path.cwd()))  # documented, not a setting
    monkeypatch.setenv("KEEPER_STRATEGIES__AAVE_V3__START_BLOCK", "5")
    result = invoke("check-config", "--offline", str(config_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "start_block = 5" in result.stdout


@pytest.mark.parametrize(
    ("key", "words"),
    [("0" * 64, "zero"), (f"{SECP256K1_ORDER:064x}", "curve order"),
     (f"0x{SECP256K1_ORDER + 1:064x}", "curve order"), ("f" * 64, "curve order")],
)
def test_invalid_private_key_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, words: str
) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", key)
    line = one_error_line(invoke("check-config", "--offline", str(config_file(tmp_path))))
    assert "KEEPER_ACCOUNT__PRIVATE_KEY" in line and words in line
    assert key.removeprefix("0x") not in line.lower()


@pytest.mark.parametrize(
    ("variable", "value", "start"),
    [("KEEPER_ACCOUNT__SEARCHER_KEY", "0" * 64,
      "KEEPER_ACCOUNT__SEARCHER_KEY: the private key is zero"),
     ("KEEPER_ACCOUNT__LANE_KEYS", f'["{SECP256K1_ORDER - 1:064x}", "{SECP256K1_ORDER:064x}"]',
      "KEEPER_ACCOUNT__LANE_KEYS[1]: the private key is not below the secp256k1 curve order"),
     ("KEEPER_ACCOUNT__LANE_KEYS", '["0x1234"]',
      "KEEPER_ACCOUNT__LANE_KEYS[0]: a private key must be 32 bytes of hex")],
)
def test_invalid_bundle_keys_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, start: str
) -> None:
    """The bundle keys are checked with the config, public submitter or not."""
    monkeypatch.setenv(variable, value)
    line = one_error_line(invoke("check-config", "--offline", str(config_file(tmp_path))))
    assert line.startswith(f"keeper: error: {start}"), line
    assert f"{SECP256K1_ORDER:064x}" not in line.lower()


def test_highest_valid_key_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", f"{SECP256K1_ORDER - 1:064x}")
    result = invoke("check-config", "--offline", str(config_file(tmp_path)))
    assert result.exit_code == 0, result.output


def test_run_without_an_answering_rpc_exits_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node still rebooting is not bad input: exit 75 (EX_TEMPFAIL), which systemd's
    RestartPreventExitStatus=2 lets it restart; check-config keeps exit 2."""
    path = tmp_path / "keeper.toml"
    path.write_text(CONFIG.format(mode="live").replace("[execution]\n", f"""[execution]
quote_token = "0x{'11' * 20}"
journal = "{tmp_path / 'journal.sqlite'}"
""") + f"""
[dex]
uniswap_v2_factory = "0x{'22' * 20}"

[monitoring]
enabled = false
""")
    monkeypatch.setenv("KEEPER_ACCOUNT__PRIVATE_KEY", f"{SECP256K1_ORDER - 1:064x}")
    result = invoke("--log-level", "critical", "run", "--config", str(path))
    assert result.exit_code == cli.EXIT_TEMPFAIL == 75, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("keeper: error: no RPC endpoint answered")
    assert invoke("check-config", str(path)).exit_code == 2


def test_read_only_commands_need_no_key_in_live_mode(tmp_path: Path) -> None:
    result = invoke("check-config", "--offline", str(config_file(tmp_path, "live")))
    assert result.exit_code == 0, result.output
    assert 'mode = "live"' in result.stdout and "# account: none configured" in result.stdout


def test_config_after_the_command(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = invoke("check-config", "--offline", "--config", str(path))
    assert result.exit_code == 0, result.output
    assert f"# config: {path}" in result.stdout
    line = one_error_line(invoke("scan", "--config", str(tmp_path / "missing.toml")))
    assert "missing.toml" in line and "not found" in line


@pytest.mark.parametrize("command", ["run", "scan", "risk", "backtest", "check-config",
                                     "backtest sweep", "devnet price", "journal"])
def test_every_command_help_shows_config(command: str) -> None:
    """Sub-commands too, and one its group finds only when named (backtest sweep)."""
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    assert "--config FILE" in result.stdout


@pytest.mark.parametrize("args", [["check-config", "--offline"], ["--help"], ["run", "--help"],
                                  ["journal", "--journal"]])
def test_closed_stdout_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`keeper check-config | head`: the reader is gone before the keeper writes; also a
    command whose tables rich prints (`keeper journal`, as scan, risk and backtest)."""
    keeper = Path(sys.executable).parent / "keeper"
    extra = [str(config_file(tmp_path))] if args[0] == "check-config" else []
    if args[0] == "journal":
        Journal(tmp_path / "journal.sqlite").close()
        extra = [str(tmp_path / "journal.sqlite")]
    proc = subprocess.Popen([str(keeper), *args, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert stderr == ""
