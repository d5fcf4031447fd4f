"""Where the project's node-side parts and caches live.

The keeper is installed editable from its checkout, so node_modules sits next
to the packages. `KEEPER_HOME` points elsewhere for other layouts.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding package.json and node_modules."""
    override = os.environ.get("KEEPER_HOME")
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parent.parent


def node_modules() -> Path:
    return project_root() / "node_modules"


def cache_dir() -> Path:
    """Compiled artifacts and dumped devnet states; safe to delete."""
    path = Path(os.environ.get("KEEPER_CACHE_DIR", project_root() / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path
