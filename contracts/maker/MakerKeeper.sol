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
///   collateral bought to the owner as the ilk's ERC-20; `takeAndSell` takes with this
///   contract as `who` and sells the collateral inside Clipper's `clipperCall` on a Uniswap V2
///   pair for the DAI the take owes, sending the rest (Maker DAI) to the owner;
/// - liquidations 1.2 (Cat + Flipper): `bite` kicks an auction and places the first bid,
///   `tend` / `dent` bid with this contract as the bidder (`guy`), pulling only the Maker DAI
///   its Vat balance lacks (an outbid bid's refund stays here for the next one), `deal`
///   exits a lot won to the owner as the ilk's ERC-20, `payOut` returns the refunds and
///   `exitGem` a lot won here that someone else dealt.
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

interface GemJoinLike {
    function gem() external view returns (address);
}

interface TokenLike {
    function transfer(address dst, uint256 amount) external returns (bool);
    function balanceOf(address usr) external view returns (uint256);
}

interface PairLike {
    function token0() external view returns (address);
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 time);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface ERC20Like {
    function approve(address spender, uint256 amount) external returns (bool);
    function transferFrom(address src, address dst, uint256 amount) external returns (bool);
}

interface CatLike {
    function bite(bytes32 ilk, address urn) external returns (uint256);
}

interface FlipLike {
    function bids(uint256 id)
        external view returns (uint256 bid, uint256 lot, address guy, uint48 tic, uint48 end, address usr, address gal, uint256 tab);
    function tend(uint256 id, uint256 lot, uint256 bid) external;
    function dent(uint256 id, uint256 lot, uint256 bid) external;
    function deal(uint256 id) external;
    function tick(uint256 id) external;
}

contract MakerKeeper {
    uint256 internal constant RAY = 10 ** 27;

    address public immutable owner;
    VatLike public immutable vat;
    JoinLike public immutable daiJoin;
    ERC20Like public immutable dai;

    event Kicked(address indexed via, uint256 indexed id, uint256 reward);
    event Taken(address indexed clip, uint256 indexed id, uint256 slice, uint256 owe);
    event Bid(address indexed flip, uint256 indexed id, uint256 lot, uint256 bid, uint256 pulled);
    event Dealt(address indexed flip, uint256 indexed id, uint256 lot);
    event PaidOut(uint256 wad);
    event Exited(address indexed gemJoin, uint256 wad);

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

    // --- Flipper (liquidations 1.2, M2's strategies/maker/flip.py): this contract is the
    // bidder (`guy`); a refund of an outbid bid stays in its Vat balance and pays for the next.

    /// Cat.bite, then (bid > 0) the first tend on the auction it kicked: Cat 1.2 pays no
    /// keeper reward, the bite is worth the auction it opens.
    function bite(address cat, bytes32 ilk, address urn, address flip, uint256 bid, uint256 maxDai)
        external onlyOwner returns (uint256 id)
    {
        id = CatLike(cat).bite(ilk, urn);
        if (bid > 0) {
            (, uint256 lot,,,,,,) = FlipLike(flip).bids(id);
            _tend(flip, id, lot, bid, maxDai);
        }
    }

    /// Flipper.tend (after Flipper.tick when the auction ended unbid), pulling from the owner
    /// only the Maker DAI the Vat balance here lacks.
    function tend(address flip, uint256 id, uint256 lot, uint256 bid, uint256 maxDai) external onlyOwner {
        (,,, uint48 tic, uint48 end,,,) = FlipLike(flip).bids(id);
        if (tic == 0 && end < block.timestamp) {
            FlipLike(flip).tick(id);
        }
        _tend(flip, id, lot, bid, maxDai);
    }

    /// Flipper.dent; a new high bidder pays the whole tab.
    function dent(address flip, uint256 id, uint256 lot, uint256 bid, uint256 maxDai) external onlyOwner {
        (,, address guy,,,,,) = FlipLike(flip).bids(id);
        uint256 pulled = _fund(guy == address(this) ? 0 : bid, maxDai);
        vat.hope(flip);
        FlipLike(flip).dent(id, lot, bid);
        emit Bid(flip, id, lot, bid, pulled);
    }

    /// Flipper.deal, and a lot won here exited to the owner as the ilk's ERC-20.
    function deal(address flip, address gemJoin, uint256 id) external onlyOwner {
        (, uint256 lot, address guy,,,,,) = FlipLike(flip).bids(id);
        FlipLike(flip).deal(id);
        if (guy == address(this)) {
            JoinLike(gemJoin).exit(owner, lot);
        }
        emit Dealt(flip, id, lot);
    }

    /// Exits the Maker DAI held in the Vat here (refunds of outbid bids) to the owner.
    function payOut() external onlyOwner returns (uint256 wad) {
        wad = _payOut();
        emit PaidOut(wad);
    }

    /// Exits gems held in the Vat here to the owner: a lot won here that someone else dealt
    /// (Flipper.deal is anyone's).
    function exitGem(address gemJoin, uint256 wad) external onlyOwner {
        JoinLike(gemJoin).exit(owner, wad);
        emit Exited(gemJoin, wad);
    }

    function _tend(address flip, uint256 id, uint256 lot, uint256 bid, uint256 maxDai) internal {
        (uint256 last,, address guy,,,,,) = FlipLike(flip).bids(id);
        uint256 pulled = _fund(guy == address(this) ? bid - last : bid, maxDai);
        vat.hope(flip);
        FlipLike(flip).tend(id, lot, bid);
        emit Bid(flip, id, lot, bid, pulled);
    }

    /// Pulls from the owner and joins the Maker DAI (wad, rounded up) by which `need` [rad]
    /// exceeds the Vat balance here.
    function _fund(uint256 need, uint256 maxDai) internal returns (uint256 wad) {
        uint256 have = vat.dai(address(this));
        if (need > have) {
            wad = (need - have + RAY - 1) / RAY;
            require(wad <= maxDai, "MakerKeeper/too-much-dai");
            require(dai.transferFrom(owner, address(this), wad), "MakerKeeper/transfer");
            daiJoin.join(address(this), wad);
        }
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

    // --- Clipper.take with clipperCall: the collateral is sold inside the take, so the
    // owner needs no DAI; what the sale leaves over the DAI the take owes goes to the owner.

    event Sold(address indexed clip, uint256 indexed id, uint256 profit);

    address internal expectedClip; // set only during takeAndSell: clipperCall's guard

    function takeAndSell(
        address clip, address gemJoin, address pair, uint256 id, uint256 amt, uint256 max,
        uint256 minProfit
    ) external onlyOwner {
        expectedClip = clip;
        vat.hope(clip);
        ClipperLike(clip).take(id, amt, max, address(this), abi.encode(gemJoin, pair));
        expectedClip = address(0);
        uint256 profit = TokenLike(address(dai)).balanceOf(address(this));
        require(profit >= minProfit, "MakerKeeper/too-little-profit");
        require(TokenLike(address(dai)).transfer(owner, profit), "MakerKeeper/transfer");
        emit Sold(clip, id, profit);
    }

    /// Clipper.take's callback, only inside our own takeAndSell: exit the `slice` just
    /// received, sell it on the Uniswap V2 pair for Maker DAI, and join what the take owes.
    function clipperCall(address sender, uint256 owe, uint256 slice, bytes calldata data) external {
        require(msg.sender == expectedClip && sender == address(this), "MakerKeeper/not-our-take");
        (address gemJoin, address pair) = abi.decode(data, (address, address));
        JoinLike(gemJoin).exit(address(this), slice);
        _sell(pair, GemJoinLike(gemJoin).gem(), slice);
        uint256 have = vat.dai(address(this));
        if (owe > have) {
            daiJoin.join(address(this), (owe - have + RAY - 1) / RAY);
        }
    }

    /// Sells `amountIn` of `gem` on a Uniswap V2 pair (UniswapV2Library.getAmountOut).
    function _sell(address pair, address gem, uint256 amountIn) internal {
        (uint112 r0, uint112 r1,) = PairLike(pair).getReserves();
        bool gemIs0 = PairLike(pair).token0() == gem;
        (uint256 rIn, uint256 rOut) = gemIs0 ? (uint256(r0), uint256(r1)) : (uint256(r1), uint256(r0));
        uint256 inWithFee = amountIn * 997;
        uint256 out = inWithFee * rOut / (rIn * 1000 + inWithFee);
        require(TokenLike(gem).transfer(pair, amountIn), "MakerKeeper/transfer");
        PairLike(pair).swap(gemIs0 ? 0 : out, gemIs0 ? out : 0, address(this), "");
    }

    /// Exits every whole Maker DAI held in the Vat here to the owner (the sub-wei rest stays).
    function _payOut() internal returns (uint256 wad) {
        wad = vat.dai(address(this)) / RAY;
        if (wad > 0) {
            daiJoin.exit(owner, wad);
        }
    }
}
