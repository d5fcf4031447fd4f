// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @dev The part of a Chainlink aggregator (our PriceFeed, or a proxy) that the adapter reads.
interface IBaseAggregator {
    function latestAnswer() external view returns (int256);
}

/// @title RatioCappedAdapter
/// @notice A devnet price source shaped like Aave's CAPO adapters (PriceCapAdapterBase in
/// bgd-labs/aave-capo): price = base aggregator answer x min(ratio, cap) / 1e18, where the
/// ratio (an LST's exchange rate, e.g. wstETH/ETH) grows every second and the cap grows at
/// most `maxYearlyGrowthBps` a year from a snapshot.
/// @dev It emits no AnswerUpdated, ever: its answer moves with the block timestamp (the
/// ratio's growth), with the base aggregator's rounds (whose events name the base, not
/// this adapter) and with `setRatio` (silent, as an LST's rate update is to a price
/// follower). A keeper must re-read it, not wait for an event. AaveOracle calls
/// `latestAnswer()`; `latestRoundData()` is there for readers that prefer it.
contract RatioCappedAdapter {
    uint256 public constant RATIO_DECIMALS = 18;
    uint256 internal constant SECONDS_PER_YEAR = 365 days;

    IBaseAggregator public immutable BASE_TO_USD_AGGREGATOR;
    uint8 public immutable decimals;
    string public description;
    address public owner;

    // The ratio: `ratioAtUpdate` at `ratioUpdatedAt`, growing `ratioGrowthPerSecond` (1e18 units).
    uint256 public ratioAtUpdate;
    uint256 public ratioUpdatedAt;
    uint256 public ratioGrowthPerSecond;

    // The cap: `snapshotRatio` at `snapshotTimestamp`, growing at most `maxYearlyGrowthBps` a year.
    uint256 public snapshotRatio;
    uint256 public snapshotTimestamp;
    uint256 public maxYearlyGrowthBps;

    constructor(
        IBaseAggregator base,
        uint8 decimals_,
        string memory description_,
        uint256 ratio,
        uint256 growthPerSecond,
        uint256 maxYearlyGrowthBps_
    ) {
        BASE_TO_USD_AGGREGATOR = base;
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        _setRatio(ratio, growthPerSecond);
        _setSnapshot(ratio, maxYearlyGrowthBps_);
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "RatioCappedAdapter: not owner");
        _;
    }

    /// @notice Sets the ratio now (and how fast it grows). Emits nothing, on purpose.
    function setRatio(uint256 ratio, uint256 growthPerSecond) external onlyOwner {
        _setRatio(ratio, growthPerSecond);
    }

    /// @notice Moves the cap's snapshot to now (CAPO's setCapParameters). Emits nothing.
    function setSnapshot(uint256 ratio, uint256 maxYearlyGrowthBps_) external onlyOwner {
        _setSnapshot(ratio, maxYearlyGrowthBps_);
    }

    function _setRatio(uint256 ratio, uint256 growthPerSecond) internal {
        require(ratio > 0, "RatioCappedAdapter: zero ratio");
        ratioAtUpdate = ratio;
        ratioUpdatedAt = block.timestamp;
        ratioGrowthPerSecond = growthPerSecond;
    }

    function _setSnapshot(uint256 ratio, uint256 maxYearlyGrowthBps_) internal {
        snapshotRatio = ratio;
        snapshotTimestamp = block.timestamp;
        maxYearlyGrowthBps = maxYearlyGrowthBps_;
    }

    /// @notice The ratio now, uncapped.
    function getRatio() public view returns (uint256) {
        return ratioAtUpdate + ratioGrowthPerSecond * (block.timestamp - ratioUpdatedAt);
    }

    /// @notice The highest ratio the adapter accepts now (CAPO's _getMaxRatio).
    function getMaxRatio() public view returns (uint256) {
        uint256 perSecond = (snapshotRatio * maxYearlyGrowthBps) / 10_000 / SECONDS_PER_YEAR;
        return snapshotRatio + perSecond * (block.timestamp - snapshotTimestamp);
    }

    /// @notice Whether the cap binds now.
    function isCapped() public view returns (bool) {
        return getRatio() > getMaxRatio();
    }

    /// @notice base x min(ratio, cap) / 1e18 (CAPO's latestAnswer); 0 if the base is not positive.
    function latestAnswer() public view returns (int256) {
        int256 basePrice = BASE_TO_USD_AGGREGATOR.latestAnswer();
        if (basePrice <= 0) {
            return 0;
        }
        uint256 ratio = getRatio();
        uint256 maxRatio = getMaxRatio();
        if (maxRatio < ratio) {
            ratio = maxRatio;
        }
        return (basePrice * int256(ratio)) / int256(10 ** RATIO_DECIMALS);
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return (1, latestAnswer(), block.timestamp, block.timestamp, 1);
    }
}
