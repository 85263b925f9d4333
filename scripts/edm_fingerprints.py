"""Regenerate plugins/pspc_network/edm_sources.json from a checkout of NVlabs/edm (for maintainers).

    git clone https://github.com/NVlabs/edm ../edm
    python scripts/edm_fingerprints.py ../edm           # rewrite the table
    python scripts/edm_fingerprints.py ../edm --check   # exit 1 if the shipped table is not what the checkout gives

Walks every commit of REF (default `main`, the official branch; forks' pull-request refs are not official) that
changed training/networks.py, oldest first, reads the file with `git show` and stores the fingerprints that
pspc_network.edm_source computes for it. Versions that fingerprint alike (cosmetic edits) share one entry listing all
their commits. Neither this script nor the table it writes contains EDM code: only definition names and hashes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pspc_network import edm_source

TABLE = Path(__file__).resolve().parent.parent / "plugins" / "pspc_network" / edm_source.TABLE_FILE
REPOSITORY = "https://github.com/NVlabs/edm"


def git(checkout: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True, text=True).stdout


def build_table(checkout: Path, ref: str = "main") -> dict:
    head = git(checkout, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    log = git(checkout, "log", "--reverse", "--format=%H %as", head, "--", edm_source.MODULE).split("\n")
    versions = []
    for commit, date in (line.split() for line in log if line.strip()):
        try:
            fingerprints = edm_source.module_fingerprints(git(checkout, "show", f"{commit}:{edm_source.MODULE}"))
        except SyntaxError as exc:  # such a version never ran, so no pickle can carry it
            print(f"skipped {commit[:7]}: its {edm_source.MODULE} does not parse ({exc.msg}, line {exc.lineno})",
                  file=sys.stderr)
            continue
        same = next((v for v in versions if v["definitions"] == fingerprints["definitions"]
                     and v["statements"] == fingerprints["statements"]), None)
        if same:
            same["commits"].append(commit)
        else:
            versions.append({"commit": commit, "date": date, "commits": [commit], **fingerprints})
    if not versions:
        raise SystemExit(f"{checkout} has no commit of {ref} that touches {edm_source.MODULE}")
    return {
        "about": f"fingerprints of every version of {edm_source.MODULE} in {REPOSITORY} ({ref}); made by "
                 "scripts/edm_fingerprints.py, read by pspc_network.edm_source. Hashes and names only, no EDM code.",
        "repository": REPOSITORY, "module": edm_source.MODULE, "ref": ref, "head": head,
        "normalisation": edm_source.NORMALISATION, "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a clone of NVlabs/edm (a bare repository works too)")
    parser.add_argument("--ref", default="main", help="branch or commit whose history is walked (default: main)")
    parser.add_argument("--out", type=Path, default=TABLE, help=f"table to write (default: {TABLE})")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    text = json.dumps(build_table(args.checkout, args.ref), indent=1) + "\n"
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out} is {'up to date' if same else 'NOT what the checkout gives; rerun without --check'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
