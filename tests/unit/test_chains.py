"""Several chains in one config and one daemon, without a chain: `[chains.<name>]` tables
layered over the shared sections, each chain's own journal, one clear line per mistake
(naming the file line of the chain's key); a chain's engine restarted on its own while the
others run on; `/metrics` labelled by chain; `/health` failing only when every chain is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from keeper import multichain
from keeper.cli import main
from keeper.config import load_config
from keeper.errors import ConfigError
from keeper.health import Health
from keeper.metrics import Metrics
from keeper.multichain import Chain, ChainHealth, ChainMetrics, chain_monitor, supervise
from tests.integration.helpers import clear_keeper_env

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
FACTORY = "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
PROVIDER = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


def _chain(name: str, chain_id: int, extra: str = "") -> str:
    return (f'[chains.{name}.chain]\nchain_id = {chain_id}\n'
            f'http_urls = ["http://127.0.0.1:{8000 + chain_id % 1000}"]\n'
            f'[chains.{name}.execution]\nquote_token = "{WETH}"\n{extra}'
            f'[chains.{name}.dex]\nuniswap_v2_factory = "{FACTORY}"\n'
            f'[chains.{name}.strategies.aave_v3]\naddresses_provider = "{PROVIDER}"\n\n')


def _load(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return dict(load_config(path).chains)


SHARED = '[execution]\nmin_profit_quote = "0.01"\nbid_share = "0.5"\n\n[monitoring]\nport = 0\n\n'


def test_each_chain_is_a_whole_config_over_the_shared_sections(tmp_path: Path) -> None:
    path = tmp_path / "keeper.toml"
    path.write_text(SHARED + _chain("mainnet", 1) + _chain("base", 8453, 'bid_share = "0.9"\n'))
    config = load_config(path)
    chains = config.chains
    assert list(chains) == ["mainnet", "base"] and config is chains["mainnet"]
    assert {n: c.chain.chain_id for n, c in chains.items()} == {"mainnet": 1, "base": 8453}
    assert [str(c.execution.bid_share) for c in chains.values()] == ["0.5", "0.9"]
    assert all(str(c.execution.min_profit_quote) == "0.01" for c in chains.values())
    assert {n: c.execution.journal for n, c in chains.items()} == {
        "mainnet": tmp_path / "keeper-journal.mainnet.sqlite",
        "base": tmp_path / "keeper-journal.base.sqlite"}
    assert all(list(c.strategies.sections()) == ["aave_v3"] for c in chains.values())


def test_check_config_prints_every_chain(tmp_path: Path) -> None:
    path = tmp_path / "keeper.toml"
    path.write_text(SHARED + _chain("mainnet", 1) + _chain("base", 8453))
    result = CliRunner().invoke(main, ["check-config", "--offline", str(path)])
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("# config:")] == [
        f"# config: {path}, chain mainnet", f"# config: {path}, chain base"]
    assert "chain_id = 8453" in result.output


def test_a_single_chain_file_has_no_chains(tmp_path: Path) -> None:
    path = tmp_path / "keeper.toml"
    path.write_text('[chain]\nchain_id = 1\nhttp_urls = ["http://127.0.0.1:8545"]\n')
    assert load_config(path).chains == {}


@pytest.mark.parametrize(("text", "message"), [
    ('[chain]\nchain_id = 1\nhttp_urls = ["http://x:1"]\n' + _chain("a", 1),
     "[chain] and [chains.<name>] tables cannot be mixed"),
    (_chain("a", 1) + _chain("b", 1), "chains.a and chains.b both have chain_id 1"),
    ('[execution]\njournal = "j.sqlite"\n' + _chain("a", 1)
     + _chain("b", 2, 'journal = "j.a.sqlite"\n'), "chains.a and chains.b both journal to"),
    (_chain("a", 1) + "[chains.a.monitoring]\nport = 1\n",
     "chains.a.monitoring: shared by every chain; set [monitoring] at the top level"),
    (_chain("a", 1) + "[chains.a.wallet]\nx = 1\n", "chains.a: unknown key wallet"),
    ("[chains.a.execution]\nmode = 'live'\n", "missing required table [chains.a.chain]"),
    (_chain('"a.b"', 1), "a chain's name is 1-32 letters"),
    ("chains = 3\n", "[chains] needs at least one [chains.<name>] table"),
])
def test_mistakes_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_chains_bad_key_names_its_line(tmp_path: Path) -> None:
    text = SHARED + _chain("mainnet", 1) + _chain("base", 8453, 'bid_share = "2"\n')
    line = text.splitlines().index('bid_share = "2"') + 1
    with pytest.raises(ConfigError, match=rf"keeper.toml:{line}: chains\.base\.execution\."
                                          "bid_share"):
        _load(tmp_path, text)


def test_a_failing_chain_is_restarted_alone(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """alpha's engine fails twice, then runs; beta runs throughout, never restarted."""
    path = tmp_path / "keeper.toml"
    path.write_text(_chain("alpha", 1) + _chain("beta", 2))
    configs = load_config(path).chains
    chains = {n: Chain(n, c, chain_monitor(c)) for n, c in configs.items()}
    lives: dict[str, int] = {"alpha": 0, "beta": 0}

    async def run_once(chain: Chain, stop: asyncio.Event) -> None:
        lives[chain.name] += 1
        if chain.name == "alpha" and lives["alpha"] <= 2:
            raise ConnectionError("node went away")
        chain.synced = True
        await stop.wait()

    monkeypatch.setattr(multichain, "_run_once", run_once)
    monkeypatch.setattr(multichain, "RESTART_FIRST", 0.01)

    async def main() -> None:
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            for chain in chains.values():
                tasks.create_task(supervise(chain, stop))
            while lives["alpha"] < 3:
                await asyncio.sleep(0.01)
            assert "engine failed" in " ".join(
                chains["alpha"].monitor.health.check().reasons)
            stop.set()

    asyncio.run(main())
    assert lives == {"alpha": 3, "beta": 1}
    assert chains["alpha"].restarts == 2 and chains["beta"].restarts == 0
    assert chains["alpha"].last_error == "ConnectionError: node went away"


def test_metrics_carry_a_chain_label_and_the_process_once() -> None:
    alpha, beta = Metrics(process=False), Metrics(process=False)
    alpha.block_processed(10, 0)
    beta.block_processed(20, 0)
    beta.outcome("aave_v3", "confirmed", profit_wei=5)
    text = ChainMetrics({"alpha": alpha, "beta": beta}).exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["chain"]: s.value for s in families["keeper_head_block"].samples} == {
        "alpha": 10.0, "beta": 20.0}
    assert text.count("# TYPE keeper_head_block ") == 1
    assert [(s.labels, s.value) for s in families["keeper_opportunities_confirmed"].samples
            if s.name.endswith("_total")] == [({"strategy": "aave_v3", "chain": "beta"}, 1.0)]
    assert text.count("# TYPE process_cpu_seconds_total ") <= 1


def test_health_fails_only_when_every_chain_does() -> None:
    now = [0.0]
    alpha, beta = (Health(stall_seconds=5, clock=lambda: now[0]) for _ in range(2))
    alpha.head(1, 0)
    beta.head(1, 0)
    both = ChainHealth({"alpha": alpha, "beta": beta})
    assert both.check().status == "healthy"
    now[0] = 10.0
    alpha.head(2, 0)  # beta's node is down: no head for 10 s
    report = both.check()
    assert report.status == "degraded" and report.http_status == 200
    assert report.reasons == ["chain beta: head stalled: no new head for 10 s (last 1)"]
    now[0] = 20.0
    assert both.check().status == "failing"
