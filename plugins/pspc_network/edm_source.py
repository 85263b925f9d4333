"""Is the network source embedded in an EDM pickle that of an official EDM version?

Every persistent object in an EDM pickle carries the text of the Python module that defined its class (normally
EDM's `training/networks.py`), and the official reader runs that text: a network saved from an edited EDM computes
the edited function. pspc never runs it; it rebuilds the official architecture with its own code. That is right only
when the embedded source *is* official, so this module compares it with fingerprints of every version of
`training/networks.py` in the public NVlabs/edm history (`edm_sources.json`; `scripts/edm_fingerprints.py`
regenerates it from a checkout) and names the first definition that differs. The table holds hashes and definition
names only, no EDM code.

Fingerprint of a top-level statement: SHA-256 of a canonical dump of its syntax tree. The source is parsed, never
compiled or run. Comments, layout, quoting and parentheses do not reach the tree; string-literal statements
(docstrings) are dropped; empty fields that newer Pythons add (`type_params`, ...) and `ctx`/`kind` markers are left
out of the dump, so the fingerprint is the same on every supported Python. Any change to code changes it.

What is compared: the classes the network is made of (its persistent records) and, transitively, every top-level
name they refer to (a helper such as `AttentionOp`, an import such as `silu`), plus any top-level code that binds no
name (it would run when the official reader loads the module). All of them must match one and the same official
version. Definitions the network does not reach (DhariwalUNet in a DDPM++ network, a class someone added and did not
use) are not compared: they cannot change what this network computes, unless they run code when the module loads,
which no official version does. Ignoring them also keeps a released pickle loadable whose embedded source was an
unpublished variant differing only in parts the network does not use. The other objects of a training snapshot
(`loss_fn`, `augment_pipe`, from `training/loss.py` and `training/augment.py`) are never used here and not compared.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from pspc_core.errors import PluginError

NORMALISATION = 1  # bump when `canonical_dump` changes; the table records the one it was made with
TABLE_FILE = "edm_sources.json"
MODULE = "training/networks.py"

_DROPPED_FIELDS = {"ctx", "kind", "type_comment", "type_ignores"}
_KINDS = {ast.ClassDef: "class", ast.FunctionDef: "function", ast.AsyncFunctionDef: "function",
          ast.Import: "import", ast.ImportFrom: "import", ast.Assign: "assignment", ast.AnnAssign: "assignment"}


def _is_string_statement(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def canonical_dump(node) -> str:
    """A text form of a syntax tree that ignores docstrings, positions and version-specific empty fields."""
    if isinstance(node, list):
        return "[" + ",".join(canonical_dump(n) for n in node if not _is_string_statement(n)) + "]"
    if isinstance(node, ast.JoinedStr):  # f-strings: merge adjacent literal parts (their split varies by version)
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and parts and isinstance(parts[-1], str):
                parts[-1] += value.value
            else:
                parts.append(value.value if isinstance(value, ast.Constant) else value)
        return "JoinedStr(" + ",".join(f"str:{p!r}" if isinstance(p, str) else canonical_dump(p) for p in parts) + ")"
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if name in _DROPPED_FIELDS or value is None or (isinstance(value, list) and not value):
                continue
            fields.append(f"{name}={canonical_dump(value)}")
        return f"{type(node).__name__}(" + ",".join(fields) + ")"
    return f"{type(node).__name__}:{node!r}"


def fingerprint(node: ast.AST) -> str:
    return hashlib.sha256(canonical_dump(node).encode()).hexdigest()


@dataclass(frozen=True)
class Statement:
    """One top-level statement: the names it binds, what it is, where, its fingerprint and the names it uses."""

    names: tuple[str, ...]
    kind: str
    line: int
    fingerprint: str
    refs: frozenset[str]

    def describe(self) -> str:
        if self.names:
            return f"{self.kind} {', '.join(self.names)}"
        return f"the top-level code at line {self.line} (outside any definition)"


def _bound_names(node) -> tuple[str, ...]:
    """Top-level names a class/def/import/assignment binds; () for statements that do something else."""
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return (node.name,)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        if any(a.name == "*" for a in node.names):
            return ()
        return tuple(a.asname or a.name.split(".")[0] for a in node.names)
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = []
        for target in targets:
            elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
            if not all(isinstance(e, ast.Name) for e in elements):
                return ()  # assigns into an attribute or item: a side effect, not a definition
            names += [e.id for e in elements]
        return tuple(names)
    return ()


@lru_cache(maxsize=16)
def parse_module(source: str) -> tuple[Statement, ...]:
    """The top-level statements of `source` (parsed, never run); raises SyntaxError/ValueError if it is not Python."""
    statements = []
    for node in ast.parse(source).body:
        if _is_string_statement(node):
            continue
        names = _bound_names(node)
        kind = _KINDS.get(type(node), "statement") if names else "statement"
        refs = frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        statements.append(Statement(names, kind, node.lineno, fingerprint(node), refs))
    return tuple(statements)


def module_fingerprints(source: str) -> dict:
    """{"definitions": {name: fingerprint}, "statements": [fingerprint of code that binds no name]} of `source`."""
    definitions, statements = {}, []
    for st in parse_module(source):
        for name in st.names:
            if name in definitions:
                raise ValueError(f"{name} is bound twice at top level; one fingerprint per name cannot describe it")
            definitions[name] = st.fingerprint
        if not st.names:
            statements.append(st.fingerprint)
    return {"definitions": definitions, "statements": statements}


@lru_cache(maxsize=1)
def official_versions() -> list[dict]:
    """The shipped table: one entry per distinct official version ({"commit", "date", "definitions", "statements"})."""
    table = json.loads((files(__package__) / TABLE_FILE).read_text(encoding="utf-8"))
    if table.get("normalisation") != NORMALISATION:
        raise PluginError(f"pspc_network/{TABLE_FILE} was made with fingerprint normalisation "
                          f"{table.get('normalisation')!r}, this code computes {NORMALISATION}; regenerate it with "
                          "scripts/edm_fingerprints.py")
    return table["versions"]


def version_label(version: dict) -> str:
    return version["commit"][:7]


@dataclass(frozen=True)
class SourceVerdict:
    """`problem` is None when the compared source is official; `versions` are the official versions it matches."""

    problem: str | None
    versions: tuple[str, ...] = ()

    @property
    def official(self) -> bool:
        return self.problem is None


def check_network_source(classes_by_source: dict[str, Iterable[str]]) -> SourceVerdict:
    """Compare each embedded source (text -> class names the network instantiates from it, outermost first) with the
    official table; all compared statements of all sources must match one and the same official version."""
    versions = official_versions()
    candidates = set(range(len(versions)))
    for source, classes in classes_by_source.items():
        problem = _first_difference(source, list(dict.fromkeys(classes)), versions, candidates)
        if problem:
            return SourceVerdict(problem)
    return SourceVerdict(None, tuple(version_label(versions[i]) for i in sorted(candidates)))


def _first_difference(source: str, classes: list[str], versions: list[dict], candidates: set[int]) -> str | None:
    """The first compared statement (in source order) matching no official version; narrows `candidates`."""
    if not source.strip():
        return f"its network records carry no embedded source for class {classes[0]}"
    try:
        statements = parse_module(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"its embedded network source is not Python that parses ({type(exc).__name__})"
    bound: dict[str, list[Statement]] = {}
    for st in statements:
        for name in st.names:
            bound.setdefault(name, []).append(st)
    for name in classes:
        if not any(st.kind == "class" for st in bound.get(name, [])):
            return f"its embedded network source does not define class {name}, which the network is made of"
    reached, queue = set(classes), deque(classes)
    while queue:
        for st in bound.get(queue.popleft(), []):
            for ref in st.refs & bound.keys() - reached:
                reached.add(ref)
                queue.append(ref)
    for st in statements:
        if st.names and not reached.intersection(st.names):
            continue  # not used by this network
        if not st.names:
            matching = {i for i in candidates if st.fingerprint in versions[i]["statements"]}
            if not matching:
                return f"{st.describe()} is in no official EDM version"
        else:
            name = next(n for n in st.names if n in reached)
            if len(bound[name]) > 1:
                return f"it binds {name} {len(bound[name])} times at top level, which no official EDM version does"
            known = [i for i, v in enumerate(versions) if name in v["definitions"]]
            if not known:
                return f"{st.kind} {name} is in no official EDM version"
            matching = {i for i in known if versions[i]["definitions"][name] == st.fingerprint}
            if not matching:
                return f"{st.kind} {name} differs from every official EDM version"
            if not matching & candidates:
                return (f"{st.kind} {name} is from another official EDM version than the definitions before it "
                        "(a mix of versions)")
        candidates &= matching
    return None


def describe_versions() -> str:
    return "NVlabs/edm " + ", ".join(version_label(v) for v in official_versions())
