"""Contract artifacts: Hardhat JSON from node_modules, and offline solcjs compiles.

Hardhat artifacts carry `__$…$__` link placeholders; `link()` writes library
addresses at the `linkReferences` offsets before the hex is decoded.
Solidity sources are compiled with the solcjs pinned in package.json (no
native-solc download) and cached under `.cache/solc`, keyed on the sources,
settings and compiler version.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper.errors import DevnetError
from keeper.paths import cache_dir, node_modules

LinkReferences = dict[str, dict[str, list[dict[str, int]]]]


@dataclass(frozen=True)
class Artifact:
    """ABI plus creation bytecode (hex, maybe with unlinked library placeholders)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    link_references: LinkReferences = field(default_factory=dict)

    def linked(self, libraries: Mapping[str, str]) -> bytes:
        """Creation code with every referenced library's address written in."""
        code = bytearray(bytes.fromhex(_strip_placeholders(self.bytecode)))
        for _source, libs in self.link_references.items():
            for lib_name, offsets in libs.items():
                if lib_name not in libraries:
                    raise DevnetError(f"{self.name} needs library {lib_name} linked")
                address = bytes.fromhex(libraries[lib_name].removeprefix("0x"))
                for ref in offsets:
                    code[ref["start"] : ref["start"] + ref["length"]] = address
        return bytes(code)


def _strip_placeholders(bytecode: str) -> str:
    # Placeholders are 40 hex chars `__$<34 hex>$__`; zero them so fromhex works.
    hexcode = bytecode.removeprefix("0x")
    out: list[str] = []
    i = 0
    while i < len(hexcode):
        if hexcode.startswith("__", i):
            out.append("0" * 40)
            i += 40
        else:
            out.append(hexcode[i])
            i += 1
    return "".join(out)


def hardhat(package: str, relative: str) -> Artifact:
    """Load a Hardhat/Truffle-style JSON artifact from an npm package."""
    path = node_modules() / package / relative
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DevnetError(f"artifact {path} not found: run `npm ci`") from None
    bytecode = data.get("bytecode") or data.get("evm", {}).get("bytecode", {}).get("object", "")
    return Artifact(
        name=data.get("contractName", path.stem),
        abi=data["abi"],
        bytecode=bytecode,
        link_references=data.get("linkReferences", {}),
    )


def aave(relative: str) -> Artifact:
    """An @aave/core-v3 artifact, e.g. `protocol/pool/Pool.sol/Pool.json`."""
    return hardhat("@aave/core-v3", f"artifacts/contracts/{relative}")


_SOLC_SCRIPT = r"""
const solc = require(process.argv[1]);
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  const findImports = (p) => {
    const fs = require('fs');
    // Remappings (foundry's `prefix/=dir/`) come first, then the search roots.
    for (const [prefix, dir] of req.remappings) {
      if (p.startsWith(prefix)) {
        const full = require('path').join(dir, p.slice(prefix.length));
        if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
      }
    }
    for (const root of req.roots) {
      const full = require('path').join(root, p);
      if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
    }
    return { error: 'not found: ' + p };
  };
  const out = solc.compile(JSON.stringify(req.input), { import: findImports });
  process.stdout.write(JSON.stringify({ version: solc.version(), output: JSON.parse(out) }));
});
"""


def solc_version(package: str = "solc") -> str:
    """The version of a solcjs package in node_modules (`solc`, or an alias like `solc-0.8.27`)."""
    data = json.loads((node_modules() / package / "package.json").read_text())
    return str(data["version"])


_OUTPUTS = ["abi", "evm.bytecode.object"]
_LINKED_OUTPUTS = [*_OUTPUTS, "evm.bytecode.linkReferences"]


def compile_solidity(
    sources: Mapping[str, Path],
    *,
    roots: list[Path],
    optimizer_runs: int = 200,
    via_ir: bool = False,
    evm_version: str = "paris",
    solc: str = "solc",
    remappings: Mapping[str, Path] | None = None,
    only: Mapping[str, list[str]] | None = None,
    bytecode_hash: str | None = None,
) -> dict[str, Artifact]:
    """Compile with solcjs from node_modules; returns contracts by name. Cached on disk.

    `solc` names the solcjs package (an npm alias picks another compiler version);
    `remappings` maps import prefixes to folders, as foundry's remappings do; `only`
    ({source unit: [contract, ...]}) limits code generation to the contracts that get
    deployed (everything else is only type-checked), which is most of a big compile's
    time. With `only`, link references are returned too, for libraries.
    """
    selection: dict[str, dict[str, list[str]]] = (
        {"*": {"*": _OUTPUTS}}
        if only is None
        else {unit: {name: _LINKED_OUTPUTS for name in names} for unit, names in only.items()}
    )
    settings: dict[str, Any] = {
        "optimizer": {"enabled": True, "runs": optimizer_runs},
        "viaIR": via_ir,
        "evmVersion": evm_version,
        "outputSelection": selection,
    }
    if not via_ir and solc != "solc":
        # Compilers before 0.8.13 refuse the key; kept for the pinned one so its cache keys hold.
        del settings["viaIR"]
    if bytecode_hash is not None:
        settings["metadata"] = {"bytecodeHash": bytecode_hash}
    input_json: dict[str, Any] = {
        "language": "Solidity",
        "sources": {name: {"content": path.read_text()} for name, path in sources.items()},
        "settings": settings,
    }
    mapped = sorted((remappings or {}).items())
    # Imported files are part of the key too: hash every .sol under the roots that is read.
    key_material = json.dumps(input_json, sort_keys=True) + solc_version(solc)
    for root in [*roots, *(folder for _prefix, folder in mapped)]:
        for sol in sorted(root.rglob("*.sol")):
            key_material += sol.as_posix() + hashlib.sha256(sol.read_bytes()).hexdigest()
    key = hashlib.sha256(key_material.encode()).hexdigest()[:24]
    cached = cache_dir() / "solc" / f"{key}.json"
    if cached.is_file():
        output = json.loads(cached.read_text())
    else:
        output = _run_solcjs(input_json, roots, solc=solc, remappings=mapped)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(output))
        tmp.replace(cached)
    artifacts: dict[str, Artifact] = {}
    for _file, contracts in output.get("contracts", {}).items():
        for name, data in contracts.items():
            bytecode = data["evm"]["bytecode"]
            artifacts[name] = Artifact(
                name=name,
                abi=data["abi"],
                bytecode=bytecode["object"],
                link_references=bytecode.get("linkReferences", {}),
            )
    return artifacts


def _run_solcjs(
    input_json: dict[str, Any],
    roots: list[Path],
    *,
    solc: str = "solc",
    remappings: list[tuple[str, Path]] | None = None,
) -> dict[str, Any]:
    request = json.dumps(
        {
            "input": input_json,
            "roots": [str(r) for r in roots],
            "remappings": [[prefix, str(folder)] for prefix, folder in remappings or []],
        }
    )
    solc_js = str(node_modules() / solc)
    try:
        completed = subprocess.run(
            ["node", "-e", _SOLC_SCRIPT, solc_js],
            input=request,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise DevnetError("node is not installed; it is needed to run solcjs") from None
    if completed.returncode != 0:
        raise DevnetError(f"solcjs failed: {completed.stderr.strip().splitlines()[-1:]}")
    result = json.loads(completed.stdout)
    errors = [e for e in result["output"].get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise DevnetError(f"solcjs: {errors[0].get('formattedMessage', errors[0]).strip()}")
    output: dict[str, Any] = result["output"]
    return output
