"""`[ha]`: this keeper is one of several replicas of its sending account (keeper/ha/).

Without the section nothing changes: one daemon, the SQLite journal and its file locks.
With it, the journal lives in the PostgreSQL server `dsn` names (schema `journal_schema`,
one per sending account), the replicas share it and hold a leader lease there; only the
leader signs and sends. `dsn` may carry a password: it is a secret (never logged, masked
by `check-config`); set it from the environment (`KEEPER_HA__DSN`) or a `.pgpass` file.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator

from keeper import secrets
from keeper.config_sections import Section
from keeper.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from keeper.config import KeeperConfig
    from keeper.ha.replica import Replica

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class HaConfig(Section):
    """`[ha]`: replicas with a leader lease and a shared journal in PostgreSQL."""

    dsn: SecretStr
    """A libpq connection string or URI: `postgresql://keeper@db.internal:5432/keeper`."""
    journal_schema: str = "keeper"
    """The PostgreSQL schema of this account's journal and lease (created if missing)."""
    replica: str | None = None
    """This replica's name in the lease (default: the host name); the pid is added."""
    lease_seconds: float = Field(default=1.0, ge=0.2, le=60)
    """How long a lease lasts without renewal: a dead leader's successor sends after about
    this long. It is renewed every fifth of it; the leader stops sending 30 % before."""

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, dsn: SecretStr) -> SecretStr:
        secrets.register_secret(dsn)
        if not dsn.get_secret_value().strip():
            raise ValueError("must name a PostgreSQL server (a libpq connection string)")
        return dsn

    @field_validator("journal_schema")
    @classmethod
    def _schema(cls, schema: str) -> str:
        if not _IDENTIFIER.match(schema):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _)")
        return schema


def open_replica(
    config: KeeperConfig, chain_id: int, account: LocalAccount | None, dry_run: bool,
) -> Replica | None:
    """With `[ha]`, sending live: this replica of `account`, on the shared journal (a
    standby until its lease is taken). psycopg is imported only then: the `ha` extra. A
    dry run keeps its own SQLite journal on its own fork. Both submitters: in bundle mode
    the bundled transactions and their lanes' nonces are journaled in the same schema,
    fenced alike (`bundle_txs`, keeper/execution/journal_pg.py)."""
    if config.ha is None or account is None or dry_run:
        return None
    try:
        from keeper.ha.replica import Replica  # noqa: PLC0415 (the optional extra)
    except ImportError as exc:
        raise ConfigError(f"[ha] needs the ha extra: pip install 'keeper[ha]' ({exc})") from None
    ha = config.ha
    return Replica.open(ha.dsn.get_secret_value(), ha.journal_schema, chain_id, account.address,
                        name=ha.replica, lease_seconds=ha.lease_seconds)
