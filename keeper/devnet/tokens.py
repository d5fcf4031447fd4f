"""Devnet ERC-20 tokens and Chainlink-style price feeds.

Tokens are @aave/core-v3's MintableERC20 (a plain OpenZeppelin ERC-20 with a
public mint). Feeds are our own `contracts/devnet/PriceFeed.sol`, compiled
offline with solcjs, because Aave's MockAggregator cannot be updated and we
need real `AnswerUpdated` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from keeper.devnet.artifacts import Artifact, aave, compile_solidity
from keeper.devnet.deployer import Deployer
from keeper.paths import project_root

FEED_DECIMALS = 8
# The devnet feeds' published posting rule (devnet.json `feed_rules`), as a Chainlink feed's
# off-chain configuration would say it: a 1 % deviation or a one-hour heartbeat. Nothing on
# chain enforces it (anyone may post); price paths and the crash tool post what they say.
FEED_DEVIATION_BPS = 100
FEED_HEARTBEAT_SECONDS = 3600


@dataclass(frozen=True)
class TokenSpec:
    symbol: str
    decimals: int
    usd_price: Decimal


# Prices are the starting point of the demo crash path; the path itself moves them.
DEFAULT_TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("WETH", 18, Decimal("2000")),
    TokenSpec("WBTC", 8, Decimal("30000")),
    TokenSpec("USDC", 6, Decimal("1")),
    TokenSpec("DAI", 18, Decimal("1")),
)


def mintable_erc20() -> Artifact:
    return aave("mocks/tokens/MintableERC20.sol/MintableERC20.json")


def devnet_contracts() -> dict[str, Artifact]:
    """Our own devnet contracts (feeds, Morpho oracle adapter), compiled with solcjs."""
    root = project_root() / "contracts" / "devnet"
    sources = {p.name: p for p in sorted(root.glob("*.sol"))}
    return compile_solidity(sources, roots=[root])


def price_feed() -> Artifact:
    return devnet_contracts()["PriceFeed"]


def to_feed_answer(usd: Decimal) -> int:
    """A USD price as an 8-decimal Chainlink answer."""
    return int(usd * 10**FEED_DECIMALS)


def deploy_tokens(deployer: Deployer, specs: tuple[TokenSpec, ...]) -> dict[str, Contract]:
    artifact = mintable_erc20()
    return {
        spec.symbol: deployer.deploy(artifact, f"Devnet {spec.symbol}", spec.symbol, spec.decimals)
        for spec in specs
    }


def deploy_feeds(deployer: Deployer, specs: tuple[TokenSpec, ...]) -> dict[str, Contract]:
    artifact = price_feed()
    return {
        spec.symbol: deployer.deploy(
            artifact, FEED_DECIMALS, f"{spec.symbol} / USD", to_feed_answer(spec.usd_price)
        )
        for spec in specs
    }


def post_price(w3: Web3, feed: str, usd: Decimal, sender: str) -> TxReceipt:
    """Post a new round on a devnet feed; it emits AnswerUpdated like a Chainlink aggregator."""
    contract = w3.eth.contract(address=Web3.to_checksum_address(feed), abi=price_feed().abi)
    deployer = Deployer(w3, Web3.to_checksum_address(sender))
    return deployer.send(contract.functions.updateAnswer(to_feed_answer(usd)))
