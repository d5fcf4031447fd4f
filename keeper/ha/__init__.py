"""Replicas of one sending account: a leader lease and a shared journal in PostgreSQL.

`lease.py` holds the lease (a row with an expiry and an epoch), `replica.py` turns a
running keeper into a leader or a standby by it, `local_pg.py` starts a throwaway
PostgreSQL server for tests and benchmarks. The journal itself is
keeper/execution/journal_pg.py. See docs/operations.md ("Replicas").
"""
