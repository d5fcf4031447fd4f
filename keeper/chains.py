"""Several chains in one config file: `[chains.<name>]` tables, each a whole chain's config.

A chain's table holds the sections a single-chain file has at its top level: `chain`
(its RPC and chain id), `execution`, `dex`, `strategies`, and optionally `account`,
`breakers` and `alerts`. The file's top-level sections (except `[chain]`, which
`[chains]` replaces) are shared defaults: a chain's section is layered over the
top-level one of the same name key by key, except `strategies`, which a chain's table
replaces whole (strategy addresses belong to one chain). `[monitoring]` is shared only:
one `/metrics` and `/health` server serves every chain (keeper/multichain.py). The
environment's `KEEPER_*` settings apply to every chain.

Each chain is validated as a whole config (every problem one line naming the file line
and the `chains.<name>.` key) and gets its own journal: `execution.journal` when its table
sets one, else the shared one's name with `.<name>` before its suffix
(`keeper-journal.mainnet.sqlite`). Chain ids and journals must differ between chains.

`load_config` calls `load_chains` for a file with `[chains]`; it returns the first
chain's config, whose `chains` property holds them all by name (so `check-config`, `scan`
and `risk` act on the first chain, and `run` on all of them). A file without `[chains]`
is one implicit chain, as before.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from keeper.config import KeeperConfig, validate_config
from keeper.errors import ConfigError

CHAIN_SECTIONS = ("chain", "account", "execution", "dex", "breakers", "alerts", "strategies")
SHARED_ONLY = ("monitoring",)
DEFAULT_JOURNAL = "keeper-journal.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # a metrics label value and part of a file name


def load_chains(path: Path, text: str, data: dict[str, Any]) -> KeeperConfig:
    """Every `[chains.<name>]` table validated as a whole config; the first one, holding
    them all in `chains`."""
    shared = {k: v for k, v in data.items() if k != "chains"}
    tables = data["chains"]
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: [chains] needs at least one [chains.<name>] table")
    if "chain" in shared:
        raise ConfigError(f"{path}: [chain] and [chains.<name>] tables cannot be mixed: move "
                          "[chain] into a [chains.<name>] table")
    configs: dict[str, KeeperConfig] = {}
    for name, table in tables.items():
        where = f"{path}: chains.{name}"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: a chain's name is 1-32 letters, digits, _ or -")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table ([chains.{name}.chain] ...)")
        for key in table:
            if key in SHARED_ONLY:
                raise ConfigError(f"{where}.{key}: shared by every chain; set [{key}] at the "
                                  "top level")
            if key not in CHAIN_SECTIONS:
                raise ConfigError(f"{where}: unknown key {key} (a chain's table holds "
                                  f"{', '.join(CHAIN_SECTIONS)})")
        if "chain" not in table:
            raise ConfigError(f"{where}: missing required table [chains.{name}.chain]")
        merged = layered(shared, table, name)

        def relocate(loc: tuple[int | str, ...], own: dict[str, Any] = table,
                     chain: str = name) -> tuple[int | str, ...]:
            return ("chains", chain, *loc) if loc and loc[0] in own else loc

        configs[name] = validate_config(merged, path, text, relocate)
    _distinct(path, configs)
    first = next(iter(configs.values()))
    first._chains = configs
    return first


def layered(shared: dict[str, Any], table: dict[str, Any], name: str) -> dict[str, Any]:
    """One chain's tables: its own over the shared ones, key by key (strategies whole), and
    its own journal."""
    merged = copy.deepcopy(shared)
    for section, values in table.items():
        base = merged.get(section) if section != "strategies" else None
        if isinstance(base, dict) and isinstance(values, dict):
            merged[section] = {**base, **copy.deepcopy(values)}
        else:
            merged[section] = copy.deepcopy(values)
    own = table.get("execution")
    if not (isinstance(own, dict) and "journal" in own):
        execution = merged.setdefault("execution", {})
        if isinstance(execution, dict):
            journal = Path(str(execution.get("journal", DEFAULT_JOURNAL)))
            execution["journal"] = str(journal.with_name(f"{journal.stem}.{name}"
                                                         f"{journal.suffix}"))
    return merged


def _distinct(path: Path, configs: dict[str, KeeperConfig]) -> None:
    """Two chains never share a chain id (one engine per chain) nor a journal."""
    seen_ids: dict[int, str] = {}
    seen_journals: dict[Path, str] = {}
    for name, config in configs.items():
        other = seen_ids.setdefault(config.chain.chain_id, name)
        if other != name:
            raise ConfigError(f"{path}: chains.{other} and chains.{name} both have chain_id "
                              f"{config.chain.chain_id}: one table per chain")
        journal = config.execution.journal.resolve()
        other = seen_journals.setdefault(journal, name)
        if other != name:
            raise ConfigError(f"{path}: chains.{other} and chains.{name} both journal to "
                              f"{journal}: set chains.<name>.execution.journal")
