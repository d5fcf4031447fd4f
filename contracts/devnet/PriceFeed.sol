// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title PriceFeed
/// @notice A Chainlink-style aggregator for the devnet. It keeps every round, answers
/// latestRoundData/getRoundData like an AggregatorV3, and emits AnswerUpdated and NewRound
/// on every update exactly as a mainnet OCR aggregator does, so the keeper subscribes to
/// it as it would on mainnet. Only the owner (the devnet deployer) may post answers.
contract PriceFeed {
    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 4;
    address public owner;
    uint80 public latestRound;
    mapping(uint80 => Round) internal rounds;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        _post(initialAnswer);
    }

    function transferOwnership(address newOwner) external {
        require(msg.sender == owner, "PriceFeed: not owner");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice Posts a new round with `answer` at the current block timestamp.
    function updateAnswer(int256 answer) external {
        require(msg.sender == owner, "PriceFeed: not owner");
        _post(answer);
    }

    function _post(int256 answer) internal {
        require(answer > 0, "PriceFeed: answer must be positive");
        uint80 roundId = latestRound + 1;
        latestRound = roundId;
        rounds[roundId] = Round(answer, uint64(block.timestamp), uint64(block.timestamp));
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRound].updatedAt;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        return rounds[uint80(roundId)].answer;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        return rounds[uint80(roundId)].updatedAt;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }

    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round memory r = rounds[roundId];
        require(r.updatedAt != 0, "PriceFeed: no data present");
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }
}
