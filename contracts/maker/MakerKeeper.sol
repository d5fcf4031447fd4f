// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// @title MakerKeeper
/// @notice The keeper's own entry points into Maker liquidations 2.0 (Dog + Clipper), so that
/// what each one earns or pays moves as ERC-20 transfers to and from its owner (the keeper's
/// account values a send from the receipt's Transfer logs):
/// - `bark` / `redo` start or reset an auction with this contract as the keeper (`kpr`), then
///   exit the incentive (`tip + chip * tab`, paid by Vat.suck in internal DAI) to the owner
///   as Maker DAI;
/// - `take` pulls from the owner only the Maker DAI the purchase needs (what the Vat balance
///   here lacks), buys at most `amt` collateral at no more than `max`, and exits the
///   collateral bought to the owner as the ilk's ERC-20.
/// @dev Every entry point is the owner's. Mirrors Clipper.take's `owe` (dss clip.sol) to know
/// how much DAI to pull; a mismatch only leaves a little Vat DAI here for the next take.
interface VatLike {
    function hope(address usr) external;
    function dai(address usr) external view returns (uint256);
    function gem(bytes32 ilk, address usr) external view returns (uint256);
}

interface DogLike {
    function bark(bytes32 ilk, address urn, address kpr) external returns (uint256);
}

interface ClipperLike {
    function ilk() external view returns (bytes32);
    function chost() external view returns (uint256);
    function sales(uint256 id)
        external view returns (uint256 pos, uint256 tab, uint256 lot, address usr, uint96 tic, uint256 top);
    function getStatus(uint256 id)
        external view returns (bool needsRedo, uint256 price, uint256 lot, uint256 tab);
    function take(uint256 id, uint256 amt, uint256 max, address who, bytes calldata data) external;
    function redo(uint256 id, address kpr) external;
}

interface JoinLike {
    function join(address usr, uint256 wad) external;
    function exit(address usr, uint256 wad) external;
}

interface ERC20Like {
    function approve(address spender, uint256 amount) external returns (bool);
    function transferFrom(address src, address dst, uint256 amount) external returns (bool);
}

contract MakerKeeper {
    uint256 internal constant RAY = 10 ** 27;

    address public immutable owner;
    VatLike public immutable vat;
    JoinLike public immutable daiJoin;
    ERC20Like public immutable dai;

    event Kicked(address indexed via, uint256 indexed id, uint256 reward);
    event Taken(address indexed clip, uint256 indexed id, uint256 slice, uint256 owe);

    modifier onlyOwner() {
        require(msg.sender == owner, "MakerKeeper/not-owner");
        _;
    }

    constructor(address vat_, address daiJoin_, address dai_) {
        owner = msg.sender;
        vat = VatLike(vat_);
        daiJoin = JoinLike(daiJoin_);
        dai = ERC20Like(dai_);
        VatLike(vat_).hope(daiJoin_);
        require(ERC20Like(dai_).approve(daiJoin_, type(uint256).max), "MakerKeeper/approve");
    }

    function bark(address dog, bytes32 ilk, address urn) external onlyOwner returns (uint256 id) {
        id = DogLike(dog).bark(ilk, urn, address(this));
        emit Kicked(dog, id, _payOut());
    }

    function redo(address clip, uint256 id) external onlyOwner {
        ClipperLike(clip).redo(id, address(this));
        emit Kicked(clip, id, _payOut());
    }

    function take(address clip, address gemJoin, uint256 id, uint256 amt, uint256 max, uint256 maxDai)
        external onlyOwner
    {
        ClipperLike c = ClipperLike(clip);
        (, uint256 price,,) = c.getStatus(id);
        uint256 owe = _owe(c, id, amt, price);
        uint256 have = vat.dai(address(this));
        if (owe > have) {
            uint256 wad = (owe - have + RAY - 1) / RAY;
            require(wad <= maxDai, "MakerKeeper/too-much-dai");
            require(dai.transferFrom(owner, address(this), wad), "MakerKeeper/transfer");
            daiJoin.join(address(this), wad);
        }
        vat.hope(clip);
        bytes32 ilk = c.ilk();
        uint256 before = vat.gem(ilk, address(this));
        c.take(id, amt, max, address(this), "");
        uint256 slice = vat.gem(ilk, address(this)) - before;
        JoinLike(gemJoin).exit(owner, slice);
        emit Taken(clip, id, slice, owe);
    }

    /// Clipper.take's `owe` [rad] for buying up to `amt` at `price` (dss clip.sol).
    function _owe(ClipperLike c, uint256 id, uint256 amt, uint256 price) internal view returns (uint256 owe) {
        (, uint256 tab, uint256 lot,,,) = c.sales(id);
        uint256 slice = lot < amt ? lot : amt;
        owe = slice * price;
        if (owe > tab) {
            owe = tab;
        } else if (owe < tab && slice < lot) {
            uint256 chost = c.chost();
            if (tab - owe < chost && tab > chost) {
                owe = tab - chost;
            }
        }
    }

    /// Exits every whole Maker DAI held in the Vat here to the owner (the sub-wei rest stays).
    function _payOut() internal returns (uint256 wad) {
        wad = vat.dai(address(this)) / RAY;
        if (wad > 0) {
            daiJoin.exit(owner, wad);
        }
    }
}
