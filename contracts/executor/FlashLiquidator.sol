// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

import {
    IAavePoolMin, IERC20Min, IMorphoMin, IUniswapV2PairMin, IUniswapV3PoolMin, MarketParams
} from "./Interfaces.sol";

/// @title FlashLiquidator
/// @notice Liquidates Aave V3 and Morpho Blue positions without holding the debt asset: borrow
/// the debt token (Morpho flash loan, Aave `flashLoanSimple`, Uniswap V2 flash swap, Uniswap V3
/// `flash`, or the contract's own balance), run every liquidation of the plan, sell each seized collateral back
/// to the debt token on Uniswap V2 pairs and Uniswap V3 pools with a min-out, repay the lender,
/// optionally pay `block.coinbase` a bid out of the surplus, and send the rest to the owner,
/// reverting unless what is left reaches `minProfit`.
/// @dev One `execute` call is one plan: one debt token, one funding source, N liquidations whose
/// debt is that token. All or nothing: any failing step reverts the whole transaction.
///
/// Security:
/// - `sweep`, `setOperator` and `transferOwnership` are owner-only; ownership moves in two
///   steps. `execute` is the owner's or an operator's (the keeper's other signing accounts,
///   its nonce lanes); the profit always goes to the owner.
/// - A flash callback runs only inside our own flash call: before calling the lender, `execute`
///   stores keccak256(lender, data); the callback must come from that lender with that data, and
///   clears the slot, so it runs at most once. Outside `execute` the slot is zero and every
///   callback reverts. Aave's callback also requires `initiator == this`, Uniswap V2's
///   `sender == this` (a V3 pool's flash callback goes to its caller: only we can be it). A Uniswap V3 swap callback is guarded the same way: before each pool
///   swap, keccak256(pool, data) is stored; only that pool, inside that swap, is paid, at most
///   once, and never more than the hop's planned input.
/// - Approvals go only to the two immutable protocol contracts (AAVE_POOL, MORPHO), for exact
///   amounts: the liquidation's `maxRepay` (reset to 0 afterwards unless fully pulled) and the
///   flash repayment (pulled in full by the lender). Uniswap pairs are paid by transfer.
/// - No selfdestruct, no delegatecall. Ether is accepted (`receive`) for the bid: WETH9's
///   `withdraw` unwraps into it, or the owner keeps a float in it; only the bid leaves to
///   `block.coinbase`, and `sweep(address(0), ..)` takes the rest out.
contract FlashLiquidator {
    enum Funding {
        OwnBalance,
        MorphoFlashLoan,
        AaveFlashLoan,
        UniswapV2FlashSwap,
        UniswapV3Flash
    }

    enum Protocol {
        AaveV3,
        MorphoBlue
    }

    /// @dev One liquidation. `amount` is Aave's `debtToCover` or Morpho's `seizedAssets`;
    /// `repaidShares` is Morpho's (exactly one of the two is non-zero for Morpho, 0 for Aave).
    /// `maxRepay` bounds the debt token the protocol may pull (the approval given to it).
    /// `swapPairs` sells all the collateral seized, pair by pair, into the plan's debt token.
    struct Liquidation {
        Protocol protocol;
        address collateral;
        address borrower;
        uint256 amount;
        uint256 repaidShares;
        uint256 maxRepay;
        MarketParams market;
        address[] swapPairs;
        uint256 minOut;
    }

    /// @dev `flashAmount` of `debtToken` is borrowed (unless OwnBalance); `flashPair` is the
    /// Uniswap V2 pair (UniswapV2FlashSwap) or V3 pool (UniswapV3Flash) lending it; it is locked
    /// while it lends, so it must not be on any liquidation's swap path.
    /// The surplus of `debtToken` is the profit, or, with `profitPairs`, what selling it along
    /// them returns; it must be at least `minProfit`. With `bidBps` (basis points, at most
    /// 10,000), `block.coinbase` is paid (profit - minProfit) * bidBps / 10,000 in ether
    /// (the builder's bid, out of the surplus), so what is left is never under `minProfit`.
    struct Plan {
        Funding funding;
        address debtToken;
        uint256 flashAmount;
        address flashPair;
        Liquidation[] liquidations;
        address[] profitPairs;
        uint256 minProfit;
        uint256 bidBps;
    }

    IAavePoolMin public immutable AAVE_POOL;
    IMorphoMin public immutable MORPHO;

    address public owner;
    address public pendingOwner;
    /// @dev Accounts besides the owner that may `execute` (nonce lanes); set by the owner.
    mapping(address => bool) public operators;
    /// @dev keccak256(lender, data) of the flash call in progress; zero otherwise.
    bytes32 private _pendingCallback;

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event Executed(address indexed profitToken, uint256 profit, uint256 liquidations);
    event Swept(address indexed token, address indexed to, uint256 amount);
    event OperatorSet(address indexed operator, bool allowed);
    event BidPaid(address indexed coinbase, address indexed profitToken, uint256 amount);

    /// TickMath.MIN_SQRT_RATIO and MAX_SQRT_RATIO (v3-core): a V3 hop's price limits are one
    /// inside them, i.e. none (as QuoterV2's quotes).
    uint160 private constant MIN_SQRT_RATIO = 4295128739;
    uint160 private constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;

    error NotOwner();
    error NotPendingOwner();
    error ZeroAddress();
    error UnexpectedCallback();
    error BadInitiator();
    error CallbackNotCalled();
    error ProtocolNotSet();
    error BadPlan();
    error MinOut(uint256 index, uint256 amountOut, uint256 minOut);
    error ProfitTooLow(uint256 profit, uint256 minProfit);
    error Loss(uint256 balanceBefore, uint256 balanceAfter);
    error TokenCallFailed(address token);
    error BidUnfunded(uint256 bid, uint256 etherHeld);
    error BidFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    modifier onlyOperator() {
        if (msg.sender != owner && !operators[msg.sender]) revert NotOwner();
        _;
    }

    /// @param owner_ the only account that may execute, sweep and hand over ownership.
    /// @param aavePool Aave V3 Pool (zero on chains without it: Aave actions then revert).
    /// @param morpho Morpho Blue (zero on chains without it).
    constructor(address owner_, address aavePool, address morpho) {
        if (owner_ == address(0)) revert ZeroAddress();
        owner = owner_;
        AAVE_POOL = IAavePoolMin(aavePool);
        MORPHO = IMorphoMin(morpho);
        emit OwnershipTransferred(address(0), owner_);
    }

    // ------------------------------------------------------------------ owner

    /// @notice Start handing over ownership; `newOwner` must call `acceptOwnership`.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    /// @notice Let `operator` execute plans (or stop it); profits still go to the owner.
    function setOperator(address operator, bool allowed) external onlyOwner {
        if (operator == address(0)) revert ZeroAddress();
        operators[operator] = allowed;
        emit OperatorSet(operator, allowed);
    }

    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    /// @notice Send stray tokens (or working capital for OwnBalance plans) out; token 0 is ether
    /// (the bid float).
    function sweep(address token, address to, uint256 amount) external onlyOwner {
        if (to == address(0)) revert ZeroAddress();
        if (token == address(0)) {
            (bool sent,) = to.call{value: amount}("");
            if (!sent) revert TokenCallFailed(token);
        } else {
            _transfer(token, to, amount);
        }
        emit Swept(token, to, amount);
    }

    // ------------------------------------------------------------------ entry point

    /// @notice Carry out `plan`; returns the profit sent to the owner (eth_call it to simulate).
    function execute(Plan calldata plan) external onlyOperator returns (uint256 profit) {
        if (plan.liquidations.length == 0) revert BadPlan();
        address debt = plan.debtToken;
        uint256 before = _balance(debt);
        Funding funding = plan.funding;
        if (funding == Funding.OwnBalance) {
            _liquidateAll(plan);
        } else {
            if (plan.flashAmount == 0) revert BadPlan();
            // The ABI encoding of our only argument: the callback decodes it back into a Plan.
            bytes calldata data = msg.data[4:];
            if (funding == Funding.MorphoFlashLoan) {
                address morpho = _protocol(address(MORPHO));
                _pendingCallback = keccak256(abi.encodePacked(morpho, data));
                MORPHO.flashLoan(debt, plan.flashAmount, data);
            } else if (funding == Funding.AaveFlashLoan) {
                address pool = _protocol(address(AAVE_POOL));
                _pendingCallback = keccak256(abi.encodePacked(pool, data));
                AAVE_POOL.flashLoanSimple(address(this), debt, plan.flashAmount, data, 0);
            } else if (funding == Funding.UniswapV3Flash) {
                IUniswapV3PoolMin pool = IUniswapV3PoolMin(plan.flashPair);
                _pendingCallback = keccak256(abi.encodePacked(address(pool), data));
                if (pool.token0() == debt) {
                    pool.flash(address(this), plan.flashAmount, 0, data);
                } else if (pool.token1() == debt) {
                    pool.flash(address(this), 0, plan.flashAmount, data);
                } else {
                    revert BadPlan();
                }
            } else {
                IUniswapV2PairMin pair = IUniswapV2PairMin(plan.flashPair);
                _pendingCallback = keccak256(abi.encodePacked(address(pair), data));
                if (pair.token0() == debt) {
                    pair.swap(plan.flashAmount, 0, address(this), data);
                } else if (pair.token1() == debt) {
                    pair.swap(0, plan.flashAmount, address(this), data);
                } else {
                    revert BadPlan();
                }
            }
            if (_pendingCallback != bytes32(0)) revert CallbackNotCalled();
        }
        uint256 afterwards = _balance(debt);
        if (afterwards < before) revert Loss(before, afterwards);
        address profitToken = debt;
        profit = afterwards - before;
        if (plan.profitPairs.length != 0 && profit != 0) {
            (profitToken, profit) = _swap(debt, profit, plan.profitPairs);
        }
        if (profit < plan.minProfit) revert ProfitTooLow(profit, plan.minProfit);
        if (plan.bidBps != 0) {
            if (plan.bidBps > 10_000) revert BadPlan();
            uint256 bid = (profit - plan.minProfit) * plan.bidBps / 10_000;
            if (bid != 0) {
                _payBid(profitToken, bid);
                profit -= bid;
            }
        }
        if (profit != 0) _transfer(profitToken, owner, profit);
        emit Executed(profitToken, profit, plan.liquidations.length);
    }

    /// @notice Ether for the bid: WETH9's `withdraw`, or the owner's float.
    receive() external payable {}

    // ------------------------------------------------------------------ flash callbacks

    /// @notice Morpho Blue's flash-loan callback; Morpho pulls `assets` back after it returns.
    function onMorphoFlashLoan(uint256 assets, bytes calldata data) external {
        _enterCallback(data);
        Plan memory plan = abi.decode(data, (Plan));
        _liquidateAll(plan);
        _approve(plan.debtToken, address(MORPHO), assets);
    }

    /// @notice Aave V3's `flashLoanSimple` callback; the Pool pulls amount + premium afterwards.
    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata params
    ) external returns (bool) {
        if (initiator != address(this)) revert BadInitiator();
        _enterCallback(params);
        Plan memory plan = abi.decode(params, (Plan));
        _liquidateAll(plan);
        _approve(asset, address(AAVE_POOL), amount + premium);
        return true;
    }

    /// @notice Uniswap V3 swap callback: pay the pool what it is owed of the hop's input, at most
    /// the planned amount, only inside that pool's swap (see `_hopV3`).
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data)
        external
    {
        _enterCallback(data);
        (address tokenIn, uint256 amountIn) = abi.decode(data, (address, uint256));
        uint256 owed = uint256(amount0Delta > 0 ? amount0Delta : amount1Delta);
        if (owed > amountIn) revert BadPlan();
        _transfer(tokenIn, msg.sender, owed);
    }

    /// @notice Uniswap V3 `flash` callback: the pool checks its balance grew by the fee after
    /// this returns. Only the other token's fee is zero (nothing of it was borrowed), so the sum
    /// of both fees is this loan's.
    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        _enterCallback(data);
        Plan memory plan = abi.decode(data, (Plan));
        _liquidateAll(plan);
        _transfer(plan.debtToken, msg.sender, plan.flashAmount + fee0 + fee1);
    }

    /// @notice Uniswap V2 flash-swap callback: repaid in the borrowed token, fee included.
    function uniswapV2Call(address sender, uint256, uint256, bytes calldata data) external {
        if (sender != address(this)) revert BadInitiator();
        _enterCallback(data);
        Plan memory plan = abi.decode(data, (Plan));
        _liquidateAll(plan);
        // Same-token repayment must satisfy 997 * repaid >= 1000 * borrowed (the 0.3 % fee).
        _transfer(plan.debtToken, msg.sender, (plan.flashAmount * 1000 + 996) / 997);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Pay `bid` wei to block.coinbase, out of `bid` of the profit token: unwrapped when
    /// the token is WETH9-like (`withdraw` turns it into exactly that much ether), else paid
    /// from the ether float and the tokens stay here, to the owner's float account.
    function _payBid(address token, uint256 bid) private {
        uint256 held = address(this).balance;
        (bool unwrapped,) = token.call(abi.encodeWithSelector(0x2e1a7d4d, bid));
        if (unwrapped) {
            if (address(this).balance != held + bid) revert BadPlan();
        } else if (held < bid) {
            revert BidUnfunded(bid, held);
        }
        (bool paid,) = block.coinbase.call{value: bid}("");
        if (!paid) revert BidFailed();
        emit BidPaid(block.coinbase, token, bid);
    }

    function _enterCallback(bytes calldata data) private {
        bytes32 expected = _pendingCallback;
        if (expected == bytes32(0) || expected != keccak256(abi.encodePacked(msg.sender, data))) {
            revert UnexpectedCallback();
        }
        _pendingCallback = bytes32(0);
    }

    function _protocol(address target) private pure returns (address) {
        if (target == address(0)) revert ProtocolNotSet();
        return target;
    }

    function _liquidateAll(Plan memory plan) private {
        address debt = plan.debtToken;
        uint256 count = plan.liquidations.length;
        for (uint256 i; i < count; ++i) {
            Liquidation memory liq = plan.liquidations[i];
            if (liq.collateral == debt || liq.swapPairs.length == 0) revert BadPlan();
            uint256 held = _balance(liq.collateral);
            if (liq.protocol == Protocol.AaveV3) {
                address pool = _protocol(address(AAVE_POOL));
                _approve(debt, pool, liq.maxRepay);
                AAVE_POOL.liquidationCall(liq.collateral, debt, liq.borrower, liq.amount, false);
                _clearApproval(debt, pool);
            } else {
                address morpho = _protocol(address(MORPHO));
                if (liq.market.loanToken != debt || liq.market.collateralToken != liq.collateral) {
                    revert BadPlan();
                }
                _approve(debt, morpho, liq.maxRepay);
                MORPHO.liquidate(liq.market, liq.borrower, liq.amount, liq.repaidShares, "");
                _clearApproval(debt, morpho);
            }
            uint256 seized = _balance(liq.collateral) - held;
            (address out, uint256 got) = _swap(liq.collateral, seized, liq.swapPairs);
            if (out != debt) revert BadPlan();
            if (got < liq.minOut) revert MinOut(i, got, liq.minOut);
        }
    }

    /// @dev Sell `amountIn` along `pairs` (Uniswap V2 pairs and V3 pools, told apart by V3's
    /// `tickSpacing`) with no router and no approval: a V2 pair is paid by transfer before its
    /// swap, a V3 pool in its callback; each hop's output goes straight to the next V2 pair, or
    /// to this contract when the next hop is a V3 pool or there is none.
    function _swap(address tokenIn, uint256 amountIn, address[] memory pairs)
        private
        returns (address, uint256)
    {
        uint256 hops = pairs.length;
        bool[] memory v3 = new bool[](hops);
        for (uint256 i; i < hops; ++i) {
            v3[i] = _isV3(pairs[i]);
        }
        if (!v3[0]) _transfer(tokenIn, pairs[0], amountIn);
        for (uint256 i; i < hops; ++i) {
            address to = i + 1 < hops && !v3[i + 1] ? pairs[i + 1] : address(this);
            (tokenIn, amountIn) = v3[i]
                ? _hopV3(IUniswapV3PoolMin(pairs[i]), tokenIn, amountIn, to)
                : _hop(IUniswapV2PairMin(pairs[i]), tokenIn, amountIn, to);
        }
        return (tokenIn, amountIn);
    }

    /// @dev A Uniswap V3 pool answers `tickSpacing()`; a V2 pair has no such function.
    function _isV3(address pool) private view returns (bool) {
        (bool ok, bytes memory answer) =
            pool.staticcall(abi.encodeWithSelector(IUniswapV3PoolMin.tickSpacing.selector));
        return ok && answer.length == 32;
    }

    /// @dev One V3 pool swap of exactly `amountIn` (held here), output to `to`. The pool must
    /// take all of it (a pool that runs dry before reverts the plan).
    function _hopV3(IUniswapV3PoolMin pool, address tokenIn, uint256 amountIn, address to)
        private
        returns (address tokenOut, uint256 amountOut)
    {
        address token0 = pool.token0();
        bool zeroForOne = tokenIn == token0;
        tokenOut = zeroForOne ? pool.token1() : token0;
        if (!zeroForOne && tokenIn != pool.token1()) revert BadPlan();
        if (amountIn == 0 || amountIn > uint256(type(int256).max)) revert BadPlan();
        bytes memory data = abi.encode(tokenIn, amountIn);
        _pendingCallback = keccak256(abi.encodePacked(address(pool), data));
        (int256 amount0, int256 amount1) = pool.swap(
            to, zeroForOne, int256(amountIn), zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1,
            data
        );
        if (_pendingCallback != bytes32(0)) revert CallbackNotCalled();
        (int256 paid, int256 received) = zeroForOne ? (amount0, amount1) : (amount1, amount0);
        if (paid != int256(amountIn) || received > 0) revert BadPlan();
        amountOut = uint256(-received);
    }

    /// @dev One pair swap of `amountIn` (already in the pair), output to `to`.
    function _hop(IUniswapV2PairMin pair, address tokenIn, uint256 amountIn, address to)
        private
        returns (address tokenOut, uint256 amountOut)
    {
        address token0 = pair.token0();
        bool zeroIn = tokenIn == token0;
        tokenOut = zeroIn ? pair.token1() : token0;
        if (!zeroIn && tokenIn != pair.token1()) revert BadPlan();
        (uint256 reserve0, uint256 reserve1,) = pair.getReserves();
        (uint256 reserveIn, uint256 reserveOut) = zeroIn ? (reserve0, reserve1) : (reserve1, reserve0);
        // UniswapV2Library.getAmountOut.
        uint256 inWithFee = amountIn * 997;
        amountOut = (inWithFee * reserveOut) / (reserveIn * 1000 + inWithFee);
        if (zeroIn) {
            pair.swap(0, amountOut, to, "");
        } else {
            pair.swap(amountOut, 0, to, "");
        }
    }

    function _balance(address token) private view returns (uint256) {
        return IERC20Min(token).balanceOf(address(this));
    }

    function _clearApproval(address token, address spender) private {
        if (IERC20Min(token).allowance(address(this), spender) != 0) _approve(token, spender, 0);
    }

    // Tokens that return nothing (USDT-style) are accepted; tokens that return false are not.
    function _approve(address token, address spender, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSelector(0x095ea7b3, spender, amount));
    }

    function _transfer(address token, address to, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSelector(0xa9059cbb, to, amount));
    }

    function _tokenCall(address token, bytes memory call) private {
        (bool ok, bytes memory ret) = token.call(call);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool))) || token.code.length == 0) {
            revert TokenCallFailed(token);
        }
    }
}
