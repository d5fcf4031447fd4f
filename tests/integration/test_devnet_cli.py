"""`keeper devnet` as a user runs it: start, devnet.json, price moves, clean stops, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from web3 import Web3

from keeper.anvil import Anvil
from keeper.cli import main
from keeper.devnet import deploy
from keeper.devnet.deploy import DevnetSpec, start_devnet
from keeper.devnet.tokens import price_feed
from keeper.errors import DevnetError
from tests.conftest import Devnet, wait_for
from tests.integration.helpers import child_pids, process_alive

KEEPER = Path(sys.executable).parent / "keeper"


@pytest.fixture
def running_devnet_command(
    devnet_session: Devnet, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`keeper devnet` in a subprocess (the session fixture has already cached the state)."""
    out = tmp_path / "devnet.json"
    process = subprocess.Popen(
        [str(KEEPER), "devnet", "--port", "0", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(out.exists, timeout=60, what="devnet.json")
        yield process, out
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_devnet_command_serves_the_deployed_chain(
    running_devnet_command: tuple[subprocess.Popen[str], Path],
) -> None:
    process, out = running_devnet_command
    info = json.loads(out.read_text())
    w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
    assert w3.eth.chain_id == info["chain_id"] == 31337
    assert w3.eth.block_number >= info["block"]
    for address in (info["aave_v3"]["pool"], info["morpho_blue"]["morpho"],
                    info["uniswap_v2"]["router"], *info["feeds"].values()):
        assert len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0
    assert set(info["tokens"]) == {"WETH", "WBTC", "USDC", "DAI"}
    assert len(info["morpho_blue"]["markets"]) == 2
    assert len(child_pids(process.pid)) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_devnet_and_anvil(
    running_devnet_command: tuple[subprocess.Popen[str], Path], signum: signal.Signals
) -> None:
    process, _out = running_devnet_command
    anvils = child_pids(process.pid)
    assert len(anvils) == 1
    process.send_signal(signum)
    assert process.wait(timeout=15) == 0
    wait_for(lambda: not process_alive(anvils[0]), timeout=10, what="anvil to exit")


def test_anvil_dies_with_a_killed_keeper(
    running_devnet_command: tuple[subprocess.Popen[str], Path],
) -> None:
    process, _out = running_devnet_command
    anvils = child_pids(process.pid)
    process.kill()  # SIGKILL: no cleanup code runs; PR_SET_PDEATHSIG must take anvil down
    process.wait(timeout=10)
    wait_for(lambda: not process_alive(anvils[0]), timeout=10, what="orphaned anvil to exit")


def test_failed_deploy_stops_anvil(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started: list[int] = []
    real_start = Anvil.start

    def recording_start(self: Anvil) -> Anvil:
        result = real_start(self)
        assert self.pid is not None
        started.append(self.pid)
        return result

    def broken_uniswap(*_args: object, **_kwargs: object) -> object:
        raise DevnetError("uniswap deploy failed (injected)")

    monkeypatch.setattr(Anvil, "start", recording_start)
    monkeypatch.setattr(deploy, "deploy_uniswap_v2", broken_uniswap)
    monkeypatch.setenv("KEEPER_CACHE_DIR", str(tmp_path))
    with pytest.raises(DevnetError, match="injected"):
        start_devnet(DevnetSpec(borrowers=2), use_cache=False)
    assert len(started) == 1
    assert not process_alive(started[0])
    assert not list((tmp_path / "devnet").glob("*.state.json"))


def test_price_command_posts_a_round(devnet: Devnet, tmp_path: Path) -> None:
    devnet_file = tmp_path / "devnet.json"
    devnet.info.write(devnet_file)
    result = CliRunner().invoke(
        main, ["devnet", "price", "weth", "1234.56", "--devnet-file", str(devnet_file)]
    )
    assert result.exit_code == 0, result.output
    feed = devnet.w3.eth.contract(
        address=Web3.to_checksum_address(devnet.info.feeds["WETH"]), abi=price_feed().abi
    )
    assert feed.functions.latestAnswer().call() == 123_456_000_000
    block = devnet.w3.eth.block_number
    logs = feed.events.AnswerUpdated().get_logs(from_block=block, to_block=block)
    assert [log["args"]["current"] for log in logs] == [123_456_000_000]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["DOGE", "1"], "no feed for 'DOGE'"),
        (["WETH", "abc"], "is not a number"),
        (["WETH", "0"], "must be positive"),
        (["WETH"], "Missing argument"),
    ],
)
def test_price_command_bad_input(
    devnet: Devnet, tmp_path: Path, args: list[str], message: str
) -> None:
    devnet_file = tmp_path / "devnet.json"
    devnet.info.write(devnet_file)
    result = CliRunner().invoke(main, ["devnet", "price", *args, "--devnet-file", str(devnet_file)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"), [(None, "devnet file not found"), ("{", "not a devnet file")]
)
def test_price_command_bad_devnet_file(tmp_path: Path, content: str | None, message: str) -> None:
    devnet_file = tmp_path / "devnet.json"
    if content is not None:
        devnet_file.write_text(content)
    result = CliRunner().invoke(main, ["devnet", "price", "WETH", "1", "--devnet-file",
                                       str(devnet_file)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output


def test_price_command_unreachable_rpc(devnet: Devnet, tmp_path: Path) -> None:
    devnet_file = tmp_path / "devnet.json"
    devnet.info.write(devnet_file)
    result = CliRunner().invoke(
        main,
        ["devnet", "price", "WETH", "1", "--devnet-file", str(devnet_file),
         "--rpc", "http://127.0.0.1:9"],
    )
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "http://127.0.0.1:9" in result.output


def test_cached_start_reuses_the_same_deployment(devnet_session: Devnet) -> None:
    anvil, info, cached = start_devnet(DevnetSpec())
    try:
        assert cached
        assert info.model_copy(update={"rpc_url": "", "ws_url": ""}) == (
            devnet_session.info.model_copy(update={"rpc_url": "", "ws_url": ""})
        )
        assert os.path.basename(anvil.rpc_url) != os.path.basename(devnet_session.info.rpc_url)
    finally:
        anvil.stop()


def test_anvil_spills_states_to_its_own_folder_and_removes_it() -> None:
    """Anvil writes states it cannot keep in memory to disk; ours go to a folder of their
    own, removed on stop, and a killed anvil's folder is removed by the next start."""
    with Anvil() as anvil:
        command = anvil.command()
        cache = Path(command[command.index("--cache-path") + 1])
        assert cache.is_dir() and (cache / "anvil.pid").read_text() == str(anvil.pid)
    assert not cache.exists()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix="keeper-anvil-"))
    (orphan / "anvil.pid").write_text(str(dead.pid))
    (orphan / "state").write_bytes(b"\0" * 1024)
    with Anvil() as anvil:
        assert not orphan.exists()  # its anvil is gone: removed at the next start
        assert anvil.rpc("eth_chainId") == hex(anvil.chain_id)
