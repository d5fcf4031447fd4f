"""Which Aave rule set a pool follows, told from the pool itself at sync.

Every Aave V3 pool exposes `POOL_REVISION()` (a public constant of Pool.sol, the same value
its `getRevision()` returns to VersionedInitializable). The strategy reads it at sync and
mirrors the rule set proven by parity on that bytecode:

- revision 1: @aave/core-v3 1.19.3 (the v3.0 line) -> `RuleSet.V3_0` (math.py);
- revision 10: aave-dao/aave-v3-origin 3.6.0 -> `RuleSet.V3_6` (math_v36.py).

Revisions 2-9 (v3.0.x patches, v3.1 = 4, v3.2 = 5/6, v3.3 = 7, v3.4 = 8, v3.5 = 9) differ
from both in ways the strategy does not mirror (v3.1-v3.2 keep stable debt and the e-mode
price source but change liquidations; v3.3-v3.5 lack v3.6's e-mode LT-0 and ltvzeroBitmap
rules, v3.3 the v3.4 interest and v3.5 rounding), so their markets are refused at start-up
rather than mirrored approximately; a pool that answers no `POOL_REVISION()` is refused too.
"""

from __future__ import annotations

import enum

from keeper.errors import ConfigError

POOL_REVISION_SELECTOR = "0x0148170e"  # POOL_REVISION()


class RuleSet(enum.Enum):
    """The mirrored protocol line; its value names the release proven by parity."""

    V3_0 = "v3.0 (@aave/core-v3 1.19.3)"
    V3_6 = "v3.6 (aave-v3-origin 3.6.0)"


_BY_REVISION = {1: RuleSet.V3_0, 10: RuleSet.V3_6}


def rules_for_revision(revision: int | None, pool: str) -> RuleSet:
    """The rule set of a pool whose `POOL_REVISION()` is `revision` (None: it did not answer);
    anything not proven raises ConfigError with one line naming the pool and the revision."""
    if revision is None:
        raise ConfigError(
            f"strategies.aave_v3: pool {pool} answers no POOL_REVISION(); supported are "
            "revision 1 (v3.0, @aave/core-v3 1.19.3) and 10 (v3.6)")
    rules = _BY_REVISION.get(revision)
    if rules is None:
        raise ConfigError(
            f"strategies.aave_v3: pool {pool} has POOL_REVISION {revision}, whose liquidation "
            "rules are not mirrored; supported are revision 1 (v3.0, @aave/core-v3 1.19.3) "
            "and 10 (v3.6, aave-v3-origin 3.6.0)")
    return rules
