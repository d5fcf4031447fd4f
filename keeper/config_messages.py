"""One line per configuration problem: where it is (file:line or environment variable),
the dotted key, and what is wrong, with secrets redacted (keeper/config.py raises it as a
`ConfigError`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings.exceptions import SettingsError

from keeper import secrets

ENV_PREFIX = "KEEPER_"


def describe_validation_error(
    exc: ValidationError, path: Path, text: str, env: set[tuple[str, ...]]
) -> str:
    """The first problem of `exc` as one line, and how many more there are."""
    errors = exc.errors()
    message = describe_error(errors[0], path, text, env)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return secrets.redact(message)


def describe_env_error(exc: SettingsError) -> str:
    """pydantic-settings could not parse a variable (a list or table that is not JSON)."""
    field = re.search(r'field "(\w+)"', str(exc))
    prefix = ENV_PREFIX + (field.group(1).upper() if field else "")
    names = sorted(n.upper() for n in os.environ if n.upper().startswith(prefix))
    return secrets.redact(
        f"environment {', '.join(names) or prefix}: cannot parse the value; lists and tables "
        f"must be JSON, e.g. {ENV_PREFIX}CHAIN__HTTP_URLS='[\"https://rpc.example\"]'"
    )


def describe_error(error: ErrorDetails, path: Path, text: str, env: set[tuple[str, ...]]) -> str:
    """One line for one pydantic error: where (file:line or env var), dotted key, problem."""
    loc = error["loc"]
    keys = tuple(str(part) for part in _keys(loc))
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    from_env = next((k for k in sorted(env, key=len) if keys[: len(k)] == k and k), None)
    if from_env is not None:
        where = "environment " + ENV_PREFIX + "__".join(from_env).upper()
    else:
        line = _line_of(text, keys)
        where = f"{path}:{line}" if line else str(path)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key {dotted}"
    if kind == "missing":
        return f"{where}: missing required key {dotted}"
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = ""
    if keys[:1] != ("account",) and isinstance(value, str | int | float | bool):
        text_value = repr(secrets.redact(value) if isinstance(value, str) else value)
        shown = f" (got {text_value[:60]}{'...' if len(text_value) > 60 else ''})"
    return f"{where}: {dotted or 'config'}: {msg}{shown}"


def _keys(loc: tuple[int | str, ...]) -> Iterator[int | str]:
    for part in loc:
        if isinstance(part, int):
            return
        yield part


def _line_of(text: str, keys: tuple[str, ...]) -> int | None:
    """Best-effort 1-based line of a dotted key in the TOML text (None if not found)."""
    if not keys:
        return None
    lines = text.splitlines()
    for depth in range(len(keys) - 1, -1, -1):
        table, key = keys[:depth], keys[depth]
        start = 0
        if table:
            header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]")
            start = next((i + 1 for i, line in enumerate(lines) if header.match(line)), -1)
            if start < 0:
                continue
        assignment = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        own_header = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, (*table, key))) + r"\s*\]"
        )
        in_table = True  # still inside `table` (top level: before the first header)
        for i in range(start, len(lines)):
            if own_header.match(lines[i]) or (in_table and assignment.match(lines[i])):
                return i + 1
            if lines[i].lstrip().startswith("["):
                if table:
                    break
                in_table = False
    return None
