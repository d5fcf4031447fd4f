// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @dev The part of a Chainlink AggregatorV3 (our PriceFeed) that the oracle reads.
interface IFeed {
    function decimals() external view returns (uint8);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}

/// @title FeedOracle
/// @notice A Morpho Blue `IOracle` that follows two of our USD feeds, like Morpho's ChainlinkOracle
/// with one base feed (collateral/USD) and one quote feed (loan/USD) and no vaults.
/// @dev `price()` is the price of 1 collateral asset unit quoted in loan asset units, scaled by 1e36:
///   price = collateralAnswer * 10^(36 + loanDecimals + loanFeedDecimals
///                                  - collateralDecimals - collateralFeedDecimals) / loanAnswer.
/// The power of ten is fixed at construction (SCALE_FACTOR) so `price()` never computes a
/// negative exponent, and the product is taken with a 512-bit mulDiv so it cannot overflow.
/// There is no staleness check: on the devnet the feeds only move when we post to them.
contract FeedOracle {
    IFeed public immutable COLLATERAL_FEED;
    IFeed public immutable LOAN_FEED;
    uint256 public immutable SCALE_FACTOR;

    constructor(IFeed collateralFeed, IFeed loanFeed, uint8 collateralDecimals, uint8 loanDecimals) {
        require(address(collateralFeed) != address(0) && address(loanFeed) != address(0), "FeedOracle: zero feed");
        COLLATERAL_FEED = collateralFeed;
        LOAN_FEED = loanFeed;
        uint256 up = 36 + uint256(loanDecimals) + uint256(loanFeed.decimals());
        uint256 down = uint256(collateralDecimals) + uint256(collateralFeed.decimals());
        // 10**77 is the largest power of ten below 2**256.
        require(up >= down && up - down <= 77, "FeedOracle: decimals out of range");
        SCALE_FACTOR = 10 ** (up - down);
    }

    /// @notice Price of 1 collateral asset unit in loan asset units, scaled by 1e36 (Morpho's IOracle).
    function price() external view returns (uint256) {
        return mulDiv(SCALE_FACTOR, _answer(COLLATERAL_FEED), _answer(LOAN_FEED));
    }

    function _answer(IFeed feed) internal view returns (uint256) {
        (, int256 answer,,,) = feed.latestRoundData();
        require(answer > 0, "FeedOracle: non-positive answer");
        return uint256(answer);
    }

    /// @dev floor(x * y / d) with a 512-bit intermediate product (Remco Bloemen's mulDiv, MIT);
    /// reverts if d is zero or the result does not fit in 256 bits.
    function mulDiv(uint256 x, uint256 y, uint256 d) internal pure returns (uint256 result) {
        unchecked {
            uint256 prod0 = x * y;
            uint256 prod1;
            assembly {
                let mm := mulmod(x, y, not(0))
                prod1 := sub(sub(mm, prod0), lt(mm, prod0))
            }
            if (prod1 == 0) {
                require(d > 0, "FeedOracle: division by zero");
                return prod0 / d;
            }
            require(d > prod1, "FeedOracle: price overflow");
            uint256 remainder;
            assembly {
                remainder := mulmod(x, y, d)
                prod1 := sub(prod1, gt(remainder, prod0))
                prod0 := sub(prod0, remainder)
            }
            uint256 twos = d & (~d + 1);
            assembly {
                d := div(d, twos)
                prod0 := div(prod0, twos)
                twos := add(div(sub(0, twos), twos), 1)
            }
            prod0 |= prod1 * twos;
            uint256 inverse = (3 * d) ^ 2;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            result = prod0 * inverse;
        }
    }
}
