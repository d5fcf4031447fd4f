// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

interface IAavePool {
    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;

    function borrow(
        address asset,
        uint256 amount,
        uint256 interestRateMode,
        uint16 referralCode,
        address onBehalfOf
    ) external;

    function setUserEMode(uint8 categoryId) external;
}

interface IMintableToken {
    function mint(address account, uint256 value) external returns (bool);

    function approve(address spender, uint256 value) external returns (bool);
}

/// @title Borrower
/// @notice One devnet borrower: it holds its own Aave V3 position, opened with real Pool
/// calls (supply, setUserEMode, borrow) made as itself. Each borrower is an EIP-1167 clone
/// of one implementation, so creating one costs ~41k gas instead of a full deployment.
contract Borrower {
    /// The factory, baked into the implementation's code (clones delegatecall into it).
    address private immutable factory;

    constructor() {
        factory = msg.sender;
    }

    /// @notice Supplies the collateral already minted to this clone, enters the e-mode
    /// category (0: none) and borrows at the variable rate, all for itself.
    function open(
        IAavePool pool,
        address[] calldata collateralAssets,
        uint256[] calldata collateralAmounts,
        uint8 emode,
        address[] calldata debtAssets,
        uint256[] calldata debtAmounts
    ) external {
        require(msg.sender == factory, "Borrower: only the factory");
        for (uint256 i = 0; i < collateralAssets.length; i++) {
            IMintableToken(collateralAssets[i]).approve(address(pool), collateralAmounts[i]);
            pool.supply(collateralAssets[i], collateralAmounts[i], address(this), 0);
        }
        if (emode != 0) {
            pool.setUserEMode(emode);
        }
        for (uint256 i = 0; i < debtAssets.length; i++) {
            if (debtAmounts[i] != 0) {
                pool.borrow(debtAssets[i], debtAmounts[i], 2, 0, address(this));
            }
        }
    }
}

/// @title BorrowerFactory
/// @notice Opens many real Aave V3 positions in one transaction, for devnet benchmarks:
/// per position it clones a Borrower, mints it the collateral (devnet tokens are
/// mintable) and has it supply and borrow on the pool. The keeper discovers the borrowers
/// from the Pool's logs exactly as it discovers any other account.
contract BorrowerFactory {
    struct Position {
        address[] collateralAssets;
        uint256[] collateralAmounts;
        uint8 emode;
        address[] debtAssets;
        uint256[] debtAmounts;
    }

    IAavePool public immutable pool;
    address public immutable implementation;
    uint256 public created;

    event BorrowersCreated(address first, uint256 count);

    constructor(IAavePool pool_) {
        pool = pool_;
        implementation = address(new Borrower());
    }

    /// @notice Mints `amounts` of `assets` to this factory and supplies them to the pool
    /// for itself: the liquidity the borrowers then borrow.
    function supplyLiquidity(address[] calldata assets, uint256[] calldata amounts) external {
        for (uint256 i = 0; i < assets.length; i++) {
            IMintableToken(assets[i]).mint(address(this), amounts[i]);
            IMintableToken(assets[i]).approve(address(pool), amounts[i]);
            pool.supply(assets[i], amounts[i], address(this), 0);
        }
    }

    /// @notice Creates one borrower per position and opens the position on the pool.
    function open(Position[] calldata positions) external {
        address first;
        for (uint256 i = 0; i < positions.length; i++) {
            Position calldata p = positions[i];
            address borrower = _clone(implementation);
            if (i == 0) first = borrower;
            for (uint256 j = 0; j < p.collateralAssets.length; j++) {
                IMintableToken(p.collateralAssets[j]).mint(borrower, p.collateralAmounts[j]);
            }
            Borrower(borrower).open(
                pool, p.collateralAssets, p.collateralAmounts, p.emode, p.debtAssets, p.debtAmounts
            );
        }
        created += positions.length;
        emit BorrowersCreated(first, positions.length);
    }

    /// EIP-1167 minimal proxy creation (the same bytes OpenZeppelin's Clones writes).
    function _clone(address target) private returns (address instance) {
        assembly {
            mstore(0x00, or(shr(0xe8, shl(0x60, target)), 0x3d602d80600a3d3981f3363d3d373d3d3d363d73000000))
            mstore(0x20, or(shl(0x78, target), 0x5af43d82803e903d91602b57fd5bf3))
            instance := create(0, 0x09, 0x37)
        }
        require(instance != address(0), "BorrowerFactory: clone failed");
    }
}
