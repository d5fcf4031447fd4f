// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title MockStableDebt
/// @notice What an Aave v3.2+ market registers as `MOCK_STABLE_DEBT` in its
/// PoolAddressesProvider: stable debt is gone, yet `Pool.getReserveData` still returns a
/// `stableDebtTokenAddress`, and it is this one address for every reserve. Integrations that
/// call the old stable-debt views on it get zeros instead of a revert, as on mainnet.
/// @dev Any call answers with four zero words, enough for every view of the old
/// IStableDebtToken (balanceOf, totalSupply, getSupplyData, getTotalSupplyAndAvgRate, ...).
contract MockStableDebt {
    fallback(bytes calldata) external returns (bytes memory) {
        return new bytes(128);
    }
}
