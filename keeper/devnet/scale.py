"""A devnet with tens of thousands of real Aave V3 positions, built fast and cached.

Seeding borrowers one EOA at a time costs 4-6 transactions each (mint, approve,
supply, borrow); at 10k borrowers that is minutes, at 100k an hour. Here one
transaction to `contracts/scale/BorrowerFactory.sol` opens a few hundred
positions: per position it creates an EIP-1167 clone of a small `Borrower`
contract, mints it the collateral and has it call the real Pool (`supply`,
`setUserEMode`, `borrow`) as itself. Nothing is faked: the Pool, the tokens and
the logs are the same as for any borrower, and the keeper discovers the clones
from the Pool's logs.

The plans reuse the default population's mix (`plan_population`: asset kinds,
log-uniform sizes, 55 % of health factors within 1.01-1.12); only its Aave V3
share is kept. The population is built on top of the default devnet's cached
state and dumped to `.cache/devnet/scale-<key>.*`, so a benchmark loads it in
seconds instead of rebuilding it.

The factory lives under `contracts/scale/`, not `contracts/devnet/`: every
`.sol` under `contracts/devnet/` is part of the default devnet's cache key, and
this contract has no effect on that state.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector

from keeper.anvil import Anvil, rpc_call
from keeper.devnet.aave import DEFAULT_RESERVES, STABLECOINS_EMODE
from keeper.devnet.artifacts import Artifact, compile_solidity, solc_version
from keeper.devnet.borrowers import BorrowerPlan, RiskParams, plan_population
from keeper.devnet.borrowers import token_amount as usd_to_units
from keeper.devnet.deploy import DevnetSpec, cache_key, start_devnet
from keeper.devnet.info import DevnetInfo
from keeper.devnet.tokens import DEFAULT_TOKENS, TokenSpec, to_feed_answer
from keeper.errors import DevnetError
from keeper.paths import cache_dir, project_root

SCALE_FORMAT = 2  # bump when the build changes what the state holds
DEFAULT_SEED = 11
# Positions per factory transaction: ~0.3M gas each, so ~150M gas per transaction.
POSITIONS_PER_TX = 500
# Raised for the build only (evm_setBlockGasLimit), so one transaction opens a whole batch.
BUILD_BLOCK_GAS_LIMIT = 300_000_000
# The factory supplies this multiple of the population's borrows, per asset, as liquidity:
# utilization stays under every rate curve's kink, so interest barely moves health factors.
LIQUIDITY_OVER_DEBT = 3
RPC_TIMEOUT = 600.0
# Collateral feeds stand this much higher while the positions are opened, and go back to
# their starting price after: a borrow is capped by LTV at the opening price, so without
# it no WETH position could sit below HF = LT / LTV = 1.031 (WBTC 1.068). With it, health
# factors land where the plans aim (55 % within 1.01-1.12), as after a real price fall.
OPEN_PRICE_FACTOR: Mapping[str, Decimal] = {"WETH": Decimal("1.08"), "WBTC": Decimal("1.08")}
_UPDATE_ANSWER = function_signature_to_4byte_selector("updateAnswer(int256)")
# Positions per anvil session while building (see start_scaled_devnet): ~1 GB of traces.
STAGE_POSITIONS = 20_000
_POSITION = "(address[],uint256[],uint8,address[],uint256[])"
_OPEN = function_signature_to_4byte_selector(f"open({_POSITION}[])")
_SUPPLY_LIQUIDITY = function_signature_to_4byte_selector("supplyLiquidity(address[],uint256[])")


@dataclass(frozen=True)
class ScaleReport:
    """What was built: how many positions, where the factory is, and what it took."""

    borrowers: int
    seed: int
    factory: str
    transactions: int
    build_seconds: float
    first_block: int
    last_block: int


def factory_artifacts() -> dict[str, Artifact]:
    root = project_root() / "contracts" / "scale"
    return compile_solidity({"BorrowerFactory.sol": root / "BorrowerFactory.sol"}, roots=[root])


def aave_risk() -> RiskParams:
    """The default devnet market's LTV/LT per asset and its stablecoin e-mode."""
    return RiskParams(
        aave_ltv_bps={s: r.ltv for s, r in DEFAULT_RESERVES.items()},
        aave_lt_bps={s: r.liquidation_threshold for s, r in DEFAULT_RESERVES.items()},
        emode_ltv_bps=STABLECOINS_EMODE.ltv,
        emode_lt_bps=STABLECOINS_EMODE.liquidation_threshold,
        morpho_lltv_wad=0,
    )


def plan_aave_positions(count: int, seed: int) -> list[BorrowerPlan]:
    """`count` Aave V3 plans with the default population's mix (its ~70 % Aave share)."""
    plans: list[BorrowerPlan] = []
    drawn = count * 10 // 7 + 16
    while len(plans) < count:
        plans = [p for p in plan_population(drawn, seed) if p.protocol == "aave_v3"]
        drawn = drawn * 11 // 10 + 16
    return plans[:count]


@dataclass(frozen=True)
class EncodedPosition:
    """One position as the factory takes it: token addresses and raw amounts."""

    collateral: tuple[tuple[str, int], ...]
    emode: int
    debt: tuple[tuple[str, int], ...]

    def abi(self) -> tuple[Any, ...]:
        return (
            [a for a, _ in self.collateral], [v for _, v in self.collateral], self.emode,
            [a for a, _ in self.debt], [v for _, v in self.debt],
        )


def size_debts_at_open(plan: BorrowerPlan, risk: RiskParams) -> dict[str, Decimal]:
    """USD debt per asset (at starting prices) that gives the plan's health factor at
    starting prices, capped at 99.5 % of the borrow limit at the opening prices."""
    def factor(symbol: str) -> Decimal:
        return OPEN_PRICE_FACTOR.get(symbol, Decimal(1))

    if plan.emode:
        lt = {s: Decimal(risk.emode_lt_bps) for s in plan.collateral_usd}
        ltv = {s: Decimal(risk.emode_ltv_bps) for s in plan.collateral_usd}
    else:
        lt = {s: Decimal(risk.aave_lt_bps[s]) for s in plan.collateral_usd}
        ltv = {s: Decimal(risk.aave_ltv_bps[s]) for s in plan.collateral_usd}
    threshold = sum((v * lt[s] for s, v in plan.collateral_usd.items()), Decimal(0)) / 10_000
    limit_at_open = sum(
        (v * factor(s) * ltv[s] for s, v in plan.collateral_usd.items()), Decimal(0)
    ) / 10_000
    # Debt is split evenly; at the opening prices each share is worth share * factor.
    debt_factor = sum((factor(s) for s in plan.debt_usd), Decimal(0)) / len(plan.debt_usd)
    total = min(threshold / plan.target_health,
                limit_at_open * Decimal("0.995") / debt_factor)
    return {symbol: total / len(plan.debt_usd) for symbol in plan.debt_usd}


def encode_positions(
    plans: Sequence[BorrowerPlan], tokens: Mapping[str, str], specs: Mapping[str, TokenSpec]
) -> list[EncodedPosition]:
    risk = aave_risk()
    out = []
    for plan in plans:
        collateral = tuple(
            (tokens[s], usd_to_units(usd, specs[s])) for s, usd in plan.collateral_usd.items()
        )
        debt = tuple(
            (tokens[s], usd_to_units(usd, specs[s]))
            for s, usd in size_debts_at_open(plan, risk).items()
        )
        out.append(EncodedPosition(collateral, plan.emode, debt))
    return out


def post_prices(url: str, info: DevnetInfo, factors: Mapping[str, Decimal]) -> None:
    """Post each feed's starting price times its factor (1 when not listed)."""
    sender = _Sender(url, info.accounts.deployer)
    for spec in DEFAULT_TOKENS:
        answer = to_feed_answer(spec.usd_price * factors.get(spec.symbol, Decimal(1)))
        sender.send(info.feeds[spec.symbol], _UPDATE_ANSWER + encode(["int256"], [answer]),
                    f"price {spec.symbol}")


class _Sender:
    """Raw eth_sendTransaction from an unlocked dev account, with a generous RPC timeout."""

    def __init__(self, url: str, sender: str) -> None:
        self.url = url
        self.sender = sender

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.url, method, params, timeout=RPC_TIMEOUT)

    def send(self, to: str | None, data: bytes, what: str) -> dict[str, Any]:
        tx: dict[str, Any] = {
            "from": self.sender, "data": "0x" + data.hex(), "gas": hex(BUILD_BLOCK_GAS_LIMIT - 1)
        }
        if to is not None:
            tx["to"] = to
        tx_hash = self.rpc("eth_sendTransaction", tx)
        # Automine may answer the send a moment before the receipt is stored.
        deadline = time.monotonic() + RPC_TIMEOUT
        while (receipt := self.rpc("eth_getTransactionReceipt", tx_hash)) is None:
            if time.monotonic() > deadline:
                raise DevnetError(f"{what}: no receipt for {tx_hash}")
            time.sleep(0.005)
        if int(receipt["status"], 16) != 1:
            raise DevnetError(f"{what}: transaction reverted ({tx_hash})")
        return dict(receipt)


def deploy_factory(url: str, info: DevnetInfo, positions: Sequence[EncodedPosition]) -> str:
    """Deploy the factory and have it supply the liquidity the whole population borrows."""
    sender = _Sender(url, info.accounts.deployer)
    sender.rpc("evm_setBlockGasLimit", hex(BUILD_BLOCK_GAS_LIMIT))
    creation = bytes.fromhex(factory_artifacts()["BorrowerFactory"].bytecode)
    receipt = sender.send(None, creation + encode(["address"], [info.aave_v3.pool]), "factory")
    factory = str(receipt["contractAddress"])
    borrowed: dict[str, int] = {}
    for position in positions:
        for asset, amount in position.debt:
            borrowed[asset] = borrowed.get(asset, 0) + amount
    assets = sorted(borrowed)
    liquidity = [borrowed[a] * LIQUIDITY_OVER_DEBT for a in assets]
    sender.send(factory, _SUPPLY_LIQUIDITY + encode(["address[]", "uint256[]"],
                                                   [assets, liquidity]), "liquidity")
    return factory


def open_positions(
    url: str, info: DevnetInfo, factory: str, positions: Sequence[EncodedPosition], *,
    per_tx: int = POSITIONS_PER_TX,
) -> tuple[int, int, int]:
    """Open `positions` through the factory; returns (transactions, first, last block)."""
    sender = _Sender(url, info.accounts.deployer)
    sender.rpc("evm_setBlockGasLimit", hex(BUILD_BLOCK_GAS_LIMIT))
    first_block = last_block = 0
    transactions = 0
    for i in range(0, len(positions), per_tx):
        batch = [p.abi() for p in positions[i : i + per_tx]]
        receipt = sender.send(factory, _OPEN + encode([f"{_POSITION}[]"], [batch]),
                              f"positions {i}-{i + len(batch) - 1}")
        last_block = int(receipt["blockNumber"], 16)
        first_block = first_block or last_block
        transactions += 1
    return transactions, first_block, last_block


def _encoded(info: DevnetInfo, count: int, seed: int) -> list[EncodedPosition]:
    specs = {s.symbol: s for s in DEFAULT_TOKENS}
    tokens = {s: t.address for s, t in info.tokens.items()}
    return encode_positions(plan_aave_positions(count, seed), tokens, specs)


_TRACES = b'"traces":['
_AFTER_TRACES = b'],"exit":'
_CHUNK = 1 << 20  # compressed bytes per step (traces inflate ~10x)


def strip_traces(gzipped_state: bytes, out: BinaryIO) -> None:
    """Write anvil's dumped state with every transaction's call traces emptied.

    The traces are ~95 % of a dump (each factory transaction makes thousands of nested
    calls, every one recorded with its calldata): ~55 kB per position, 5 GB at 100k.
    Nothing the keeper reads needs them (receipts and logs are kept), so they are cut
    while the dump is decompressed, in chunks, never holding the whole JSON in memory.
    In anvil's JSON a transaction's `info` has `traces` followed by `exit`, and `exit`
    appears nowhere else.
    """
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    carry = b""
    skipping = False
    view = memoryview(gzipped_state)
    for start in range(0, len(view), _CHUNK):
        carry += inflate.decompress(view[start : start + _CHUNK])
        carry, skipping = _strip_some(carry, out, skipping)
    carry += inflate.flush()
    carry, skipping = _strip_some(carry, out, skipping)
    if skipping:
        raise DevnetError("anvil state dump: a transaction's traces never end")
    out.write(carry)


def _strip_some(buffer: bytes, out: BinaryIO, skipping: bool) -> tuple[bytes, bool]:
    """Copy or skip through `buffer`; returns the undecided tail and the mode."""
    at = 0  # indexes, not slices: a slice per trace would copy the buffer each time
    while True:
        if skipping:
            end = buffer.find(_AFTER_TRACES, at)
            if end < 0:  # keep a tail that may hold the start of the marker
                return buffer[max(at, len(buffer) - len(_AFTER_TRACES)) :], True
            at, skipping = end + 1, False
        else:
            begin = buffer.find(_TRACES, at)
            if begin < 0:
                keep = max(at, len(buffer) - len(_TRACES) + 1)
                out.write(buffer[at:keep])
                return buffer[keep:], False
            out.write(buffer[at:begin] + _TRACES + b"]")
            at, skipping = begin + len(_TRACES), True


def scale_cache_key(count: int, seed: int) -> str:
    """Changes with the base devnet, the population and the code that builds it."""
    digest = hashlib.sha256(f"{SCALE_FORMAT}:{count}:{seed}:{cache_key(DevnetSpec())}".encode())
    # borrowers.py is in the base key already (it plans the positions); a change to how
    # they are built must bump SCALE_FORMAT.
    digest.update((project_root() / "contracts" / "scale" / "BorrowerFactory.sol").read_bytes())
    return digest.hexdigest()[:20]


def _paths(count: int, seed: int) -> tuple[Path, Path, Path]:
    folder = cache_dir() / "devnet"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"scale-{scale_cache_key(count, seed)}"
    return (stem.with_suffix(".state.json"), stem.with_suffix(".devnet.json"),
            stem.with_suffix(".report.json"))


def start_scaled_devnet(
    count: int, *, seed: int = DEFAULT_SEED, port: int = 0, use_cache: bool = True,
    progress: Callable[[int], None] | None = None,
) -> tuple[Anvil, DevnetInfo, ScaleReport, bool]:
    """Anvil with the default devnet plus `count` factory-made Aave V3 positions.

    Returns (anvil, info, report, from_cache); the caller owns anvil and must stop it.
    Built in stages of STAGE_POSITIONS: anvil keeps every transaction's call traces in
    memory (~55 kB per position), so after each stage the state is dumped without them
    and the next stage starts from that dump; memory stays bounded at any count.
    """
    state_path, info_path, report_path = _paths(count, seed)
    if use_cache and state_path.is_file() and info_path.is_file() and report_path.is_file():
        anvil = Anvil(load_state=state_path, port=port, startup_timeout=RPC_TIMEOUT).start()
        info = DevnetInfo.read(info_path).model_copy(
            update={"rpc_url": anvil.rpc_url, "ws_url": anvil.ws_url})
        report = ScaleReport(**json.loads(report_path.read_text()))
        return anvil, info, report, True
    started = time.perf_counter()
    anvil, base, _cached = start_devnet(DevnetSpec(), port=port)
    stage_path = state_path.with_suffix(".stage")
    try:
        positions = _encoded(base, count, seed)
        factory = deploy_factory(anvil.rpc_url, base, positions)
        post_prices(anvil.rpc_url, base, OPEN_PRICE_FACTOR)
        transactions, first_block, last_block = 0, 0, 0
        for lo in range(0, len(positions), STAGE_POSITIONS):
            if lo:  # a fresh anvil from the last stage's trace-free dump
                anvil.stop()
                anvil = Anvil(load_state=stage_path, port=port,
                              startup_timeout=RPC_TIMEOUT).start()
            sent, first, last = open_positions(
                anvil.rpc_url, base, factory, positions[lo : lo + STAGE_POSITIONS])
            transactions += sent
            first_block, last_block = first_block or first, last
            if lo + STAGE_POSITIONS >= len(positions):
                post_prices(anvil.rpc_url, base, {})  # back to the starting prices
            _dump_without_traces(anvil, stage_path)
            if progress is not None:
                progress(min(lo + STAGE_POSITIONS, len(positions)))
        report = ScaleReport(count, seed, factory, transactions,
                             time.perf_counter() - started, first_block, last_block)
        stage_path.replace(state_path)
        head = int(rpc_call(anvil.rpc_url, "eth_blockNumber", ()), 16)
        info = base.model_copy(update={"block": head, "rpc_url": anvil.rpc_url,
                                       "ws_url": anvil.ws_url})
        info.write(info_path)
        report_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    except BaseException:
        anvil.stop()
        stage_path.unlink(missing_ok=True)
        raise
    return anvil, info, report, False


def _dump_without_traces(anvil: Anvil, path: Path) -> None:
    dumped = rpc_call(anvil.rpc_url, "anvil_dumpState", (), timeout=RPC_TIMEOUT)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        strip_traces(bytes.fromhex(str(dumped).removeprefix("0x")), out)
    tmp.replace(path)


def build_lens_artifact() -> Path:
    """Compile contracts/lens/AaveLens.sol and write strategies/aave_v3/aave_lens.json.

    The keeper runs the lens as runtime code under a state override, so the artifact
    ships the runtime code; it is taken from the chain itself (an `eth_call` of the
    creation code returns the code a deployment would store) on a bare anvil.
    """
    root = project_root() / "contracts" / "lens"
    source = root / "AaveLens.sol"
    artifact = compile_solidity({"AaveLens.sol": source}, roots=[root])["AaveLens"]
    with Anvil() as anvil:
        runtime = rpc_call(anvil.rpc_url, "eth_call", ({"data": "0x" + artifact.bytecode},
                                                        "latest"))
    out = project_root() / "strategies" / "aave_v3" / "aave_lens.json"
    out.write_text(json.dumps({
        "contract": "contracts/lens/AaveLens.sol:AaveLens",
        "compiler": f"solcjs {solc_version()}, optimizer 200 runs, evm paris",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "runtime": str(runtime).removeprefix("0x"),
    }, indent=2) + "\n")
    return out
