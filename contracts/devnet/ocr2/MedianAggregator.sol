// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

import {OCR2Base} from "dev/ocr2/OCR2Base.sol";
import {AggregatorV2V3Interface} from "interfaces/AggregatorV2V3Interface.sol";

/// @title MedianAggregator
/// @notice The devnet's OCR2-style price aggregator. Chainlink's OCR2Base (@chainlink/contracts
/// 0.8.0, src/v0.8/dev/ocr2) does the protocol part unchanged: the config (signers,
/// transmitters, f) and its digest, `transmit`'s calldata length check, exactly f+1 signatures
/// over keccak256(keccak256(report) ++ reportContext) from distinct configured signers, and
/// the transmitter check. This contract adds only what the package does not ship for a price
/// feed: the median report, decoded and stored as libocr's OCR2Aggregator.sol does
/// (contract2/OCR2Aggregator.sol, `_decodeReport`/`_report`), and the AggregatorV2V3 reads
/// that Chainlink's EACAggregatorProxy forwards.
/// @dev Report = abi.encode(uint32 observationsTimestamp, bytes32 rawObservers,
/// int192[] observations, int192 juelsPerFeeCoin); observations sorted ascending, the answer
/// is observations[n / 2]. The sort is checked here (OCR2Aggregator trusts its oracles for
/// it) so a devnet report cannot pick its own "median". Devnet only: no billing, no
/// validator, no access control on reads.
contract MedianAggregator is OCR2Base, AggregatorV2V3Interface {
    struct Transmission {
        int192 answer;
        uint32 observationsTimestamp;
        uint32 transmissionTimestamp;
    }

    /// @notice Same signature as OCR2Aggregator's, so log readers of real feeds decode it.
    event NewTransmission(
        uint32 indexed aggregatorRoundId,
        int192 answer,
        address transmitter,
        uint32 observationsTimestamp,
        int192[] observations,
        bytes observers,
        int192 juelsPerFeeCoin,
        bytes32 configDigest,
        uint40 epochAndRound
    );

    uint8 public immutable override decimals;
    string public override description;
    uint256 public constant override version = 6;

    uint32 internal s_latestRoundId;
    uint40 internal s_latestEpochAndRound;
    bytes32 internal s_reportDigest;
    mapping(uint32 => Transmission) internal s_transmissions;

    constructor(uint8 decimals_, string memory description_) OCR2Base(false) {
        decimals = decimals_;
        description = description_;
    }

    function typeAndVersion() external pure override returns (string memory) {
        return "MedianAggregator 1.0.0 (devnet)";
    }

    function _beforeSetConfig(uint8, bytes memory) internal override {}

    function _afterSetConfig(uint8, bytes memory) internal override {
        // A new config starts a new epoch sequence, as OCR2Aggregator's setConfig does.
        s_latestEpochAndRound = 0;
    }

    /// @dev OCR2Base calls this first; reports must come in (epoch, round) order, so an old
    /// signed report cannot be replayed (OCR2Aggregator's "stale report"). OCR2Base passes
    /// uint32(reportContext[1]): the low 24 bits of the epoch and the round, which orders
    /// reports correctly while the epoch stays below 2^24 (the devnet's count from 1).
    function _validateReport(bytes32 configDigest, uint40 epochAndRound, bytes memory)
        internal
        override
        returns (bool)
    {
        if (epochAndRound <= s_latestEpochAndRound) return false;
        s_latestEpochAndRound = epochAndRound;
        s_reportDigest = configDigest;
        return true;
    }

    function _report(uint256, address transmitter, uint8, address[maxNumOracles] memory, bytes calldata report)
        internal
        override
    {
        (uint32 observationsTimestamp, bytes32 rawObservers, int192[] memory observations, int192 juels) =
            abi.decode(report, (uint32, bytes32, int192[], int192));
        uint256 n = observations.length;
        require(report.length == 32 * 5 + 32 * n, "report length mismatch");
        require(n <= maxNumOracles, "num observations out of bounds");
        require(s_configInfo.f < n, "too few values to trust median");
        for (uint256 i = 1; i < n; ++i) {
            require(observations[i - 1] <= observations[i], "observations not sorted");
        }
        int192 median = observations[n / 2];
        require(median > 0, "median must be positive");

        uint32 roundId = s_latestRoundId + 1;
        s_latestRoundId = roundId;
        s_transmissions[roundId] = Transmission(median, observationsTimestamp, uint32(block.timestamp));

        bytes memory observers = abi.encodePacked(rawObservers);
        assembly {
            // the first n bytes name the observers, as in OCR2Aggregator._decodeReport
            mstore(observers, n)
        }
        emit NewTransmission(
            roundId,
            median,
            transmitter,
            observationsTimestamp,
            observations,
            observers,
            juels,
            s_reportDigest,
            s_latestEpochAndRound
        );
        emit NewRound(roundId, address(0), observationsTimestamp);
        emit AnswerUpdated(median, roundId, block.timestamp);
    }

    function latestAnswer() external view override returns (int256) {
        return s_transmissions[s_latestRoundId].answer;
    }

    function latestTimestamp() external view override returns (uint256) {
        return s_transmissions[s_latestRoundId].transmissionTimestamp;
    }

    function latestRound() external view override returns (uint256) {
        return s_latestRoundId;
    }

    function getAnswer(uint256 roundId) external view override returns (int256) {
        if (roundId > type(uint32).max) return 0;
        return s_transmissions[uint32(roundId)].answer;
    }

    function getTimestamp(uint256 roundId) external view override returns (uint256) {
        if (roundId > type(uint32).max) return 0;
        return s_transmissions[uint32(roundId)].transmissionTimestamp;
    }

    function getRoundData(uint80 roundId)
        external
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        require(roundId <= type(uint32).max, "round out of range");
        Transmission memory t = s_transmissions[uint32(roundId)];
        require(t.transmissionTimestamp != 0, "No data present");
        return (roundId, t.answer, t.observationsTimestamp, t.transmissionTimestamp, roundId);
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        uint80 roundId = s_latestRoundId;
        Transmission memory t = s_transmissions[s_latestRoundId];
        return (roundId, t.answer, t.observationsTimestamp, t.transmissionTimestamp, roundId);
    }
}
