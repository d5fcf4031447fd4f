// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

interface ILensPool {
    function getUserConfiguration(address user) external view returns (uint256);

    function getUserEMode(address user) external view returns (uint256);
}

interface ILensToken {
    function scaledBalanceOf(address user) external view returns (uint256);

    function principalBalanceOf(address user) external view returns (uint256);

    function getUserStableRate(address user) external view returns (uint256);

    function getUserLastUpdated(address user) external view returns (uint40);
}

/// @title AaveLens
/// @notice A read-only batch reader for Aave V3 accounts, never deployed: the keeper calls
/// `read` with `eth_call` and a state override that puts this runtime code at an unused
/// address, so one call reads hundreds of accounts and nothing is left on chain.
/// @dev `read` returns raw bytes (no ABI head): per user, 2 + 5 * reserves words (uint256,
/// big-endian), packed back to back: Pool.getUserConfiguration, Pool.getUserEMode, then
/// for each reserve in `tokens` order aToken.scaledBalanceOf, variableDebt.scaledBalanceOf,
/// stableDebt.principalBalanceOf, stableDebt.getUserStableRate,
/// stableDebt.getUserLastUpdated: exactly the calls of the keeper's per-call read path,
/// so both decode to the same values.
contract AaveLens {
    /// @param pool the Pool proxy
    /// @param tokens per reserve, in the pool's reserve order: aToken, variable debt token,
    /// stable debt token (so 3 * reserves entries)
    /// @param users the accounts to read
    function read(ILensPool pool, address[] calldata tokens, address[] calldata users)
        external
        view
    {
        uint256 reserves = tokens.length / 3;
        uint256 words = 2 + 5 * reserves;
        bytes memory out = new bytes(users.length * words * 32);
        uint256 cursor;
        assembly {
            cursor := add(out, 32)
        }
        for (uint256 u = 0; u < users.length; u++) {
            address user = users[u];
            cursor = _put(cursor, pool.getUserConfiguration(user));
            cursor = _put(cursor, pool.getUserEMode(user));
            for (uint256 r = 0; r < reserves; r++) {
                ILensToken stableDebt = ILensToken(tokens[3 * r + 2]);
                cursor = _put(cursor, ILensToken(tokens[3 * r]).scaledBalanceOf(user));
                cursor = _put(cursor, ILensToken(tokens[3 * r + 1]).scaledBalanceOf(user));
                cursor = _put(cursor, stableDebt.principalBalanceOf(user));
                cursor = _put(cursor, stableDebt.getUserStableRate(user));
                cursor = _put(cursor, stableDebt.getUserLastUpdated(user));
            }
        }
        assembly {
            return(add(out, 32), mload(out))
        }
    }

    function _put(uint256 cursor, uint256 value) private pure returns (uint256) {
        assembly {
            mstore(cursor, value)
        }
        return cursor + 32;
    }
}
