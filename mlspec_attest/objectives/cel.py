"""The CEL engine behind objectives' success criteria (and reusable by policy checks).

Why a module of its own: cel-python 0.5.0 is a faithful but bare interpreter, and a
deploy gate needs four things it does not give out of the box:

* **Syntax errors with a position** on one line (``column 18: unexpected end of
  expression``), plus a static pass that catches unknown variables and functions
  at ``mlspec objectives check`` time instead of at deploy time.
* **Numbers across int and double.** Canonical JSON (RFC 8785) writes ``1.0`` as
  ``1``, so an accuracy of exactly 1.0 comes back from a signed payload as an int;
  plain cel-python would then fail ``metrics.accuracy >= 0.85`` with "no such
  overload". Comparisons compare int, uint and double by value (as the current CEL
  specification does), and ``+ - * /`` with one int and one double give a double.
* **Knowing what an expression read.** Variables are bound to tracking maps that
  record every leaf value read (``metrics.accuracy -> 0.91``) and every key that was
  looked up but absent, including reads made inside helper functions and macros.
  A missing metric is then a failure even where CEL's error-absorbing ``||`` / ``&&``
  would have produced ``true`` (``metrics.f1 > 0.9 || true``). Only ``has()`` may
  probe for an absent key without failing.
* **Fairness helpers** as extension functions: ``max_gap``, ``min``, ``max``, ``abs``.

Receiver-style calls work for every helper except ``min``: cel-python parses
``x.min(...)`` as its own list macro and silently ignores the argument (on a map of
slices it returns the smallest *slice name*). The static check therefore refuses
``x.min(arg)``; write ``min(slices.group, "recall")``.
"""

from __future__ import annotations

import contextvars
import io
import math
import os
import pickle
import re
import stat as stat_mod
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParser
from celpy.evaluation import CELEvalError, Evaluator, base_functions

from mlspec_attest.errors import ExpressionError

MAX_EXPRESSION_CHARS = 8192  # bounds parse and evaluation cost of one criterion
# Parse-tree depth the recursive evaluator is known to handle (about 38 nested
# parentheses; the CEL spec asks for 12). Deeper trees are refused at check time
# rather than failing only at deploy time.
MAX_TREE_DEPTH = 400

# Macros cel-python evaluates itself (member form) and their bound-variable counts.
_MEMBER_MACROS: dict[str, int] = {
    "map": 1, "filter": 1, "all": 1, "exists": 1, "exists_one": 1, "reduce": 2, "min": 0,
}
_GLOBAL_MACROS = frozenset({"has", "dyn"})
# Identifiers cel-python resolves without a binding (type names for ``type(x) == double``).
_BUILTIN_IDENTS = frozenset({
    "bool", "bytes", "double", "duration", "int", "list", "map", "null_type",
    "string", "timestamp", "type", "uint", "google",
})

# Friendly names for the parser's terminal names in "expected ..." hints.
_TOKEN_NAMES: dict[str, str] = {
    "RPAR": "')'", "LPAR": "'('", "RSQB": "']'", "LSQB": "'['", "RBRACE": "'}'",
    "LBRACE": "'{'", "COLON": "':'", "COMMA": "','", "DOT": "'.'", "IDENT": "a name",
    "QMARK": "'?'",
}


# --------------------------------------------------------------------------- numbers

def _is_number(value: Any) -> bool:
    """True for CEL int, uint and double (and Python numbers), never for bool."""
    return isinstance(value, (int, float)) and not isinstance(value, (bool, celtypes.BoolType))


def _py_number(value: Any) -> int | float:
    return float(value) if isinstance(value, float) else int(value)


def _cel_number(value: int | float) -> celtypes.Value:
    return celtypes.DoubleType(value) if isinstance(value, float) else celtypes.IntType(value)


def _kind(value: Any) -> str:
    """``bool``, ``number``, ``string`` or ``other``: the classes CEL never converts between."""
    if isinstance(value, (bool, celtypes.BoolType)):
        return "bool"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _no_coercion(symbol: str, a: Any, b: Any) -> CELEvalError | None:
    """Refuse bool or string against a number (cel-python would compare ``true`` as 1).

    A signed ``accuracy: true`` must not satisfy ``metrics.accuracy >= 0.82``. The refusal
    is also recorded on the current :class:`Tracker`, so ``||`` cannot absorb it.
    """
    kinds = {_kind(a), _kind(b)}
    if len(kinds) == 2 and "number" in kinds and kinds & {"bool", "string"}:
        reason = f"cannot apply {symbol} to {_describe(a)} and {_describe(b)}: bool and string are never numbers"
        _refuse(reason)
        return CELEvalError(reason)
    if "bool" in kinds and symbol in "+-*/":
        reason = f"cannot apply {symbol} to {_describe(a)} and {_describe(b)}: bool is not a number"
        _refuse(reason)
        return CELEvalError(reason)
    return None


def _error_or_refusal(symbol: str, a: Any, b: Any) -> Any:
    """What a wrapped operator returns before computing: an operand's CEL error, or the no-coercion refusal."""
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    return _no_coercion(symbol, a, b)


def _heterogeneous(op_name: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    """Wrap a base comparison so int, uint and double compare by value (exactly), never bool or string."""
    base = base_functions[op_name]
    symbol = op_name.strip("_")

    def compare(a: Any, b: Any) -> Any:
        early = _error_or_refusal(symbol, a, b)
        if early is not None:
            return early
        if _is_number(a) and _is_number(b) and type(a) is not type(b):
            return celtypes.BoolType(op(_py_number(a), _py_number(b)))
        return base(a, b)

    compare.__name__ = f"heterogeneous{op_name}"
    return compare


def _strict_equality(op_name: str) -> Callable[[Any, Any], Any]:
    """``==``/``!=`` that never equate bool with number, also inside lists and maps (``[true] == [1]``)."""
    scalar = _heterogeneous(op_name, (lambda a, b: a == b) if op_name == "_==_" else (lambda a, b: a != b))

    def equal(a: Any, b: Any) -> Any:
        if isinstance(a, (celtypes.ListType, celtypes.MapType)) and isinstance(b, (celtypes.ListType, celtypes.MapType)):
            from mlspec_attest.model.metadata import same_json

            plain_a, plain_b = to_plain(a), to_plain(b)
            same = same_json(plain_a, plain_b)
            if not same and plain_a == plain_b:  # equal only if bool counted as a number: refuse, as for scalars
                reason = f"cannot apply {op_name.strip('_')} to {_describe(a)} and {_describe(b)}: " \
                         "they differ only by a bool where a number is"
                _refuse(reason)
                return CELEvalError(reason)
            return celtypes.BoolType(same if op_name == "_==_" else not same)
        return scalar(a, b)

    equal.__name__ = f"strict{op_name}"
    return equal


def _strict_in(item: Any, container: Any) -> Any:
    """``x in list`` / ``x in map`` without bool-number coercion (``true in [1]`` is a refusal)."""
    if isinstance(item, CELEvalError):
        return item
    if isinstance(container, CELEvalError):
        return container
    members = list(container) if isinstance(container, (celtypes.ListType, celtypes.MapType)) else None
    if members is not None and _kind(item) in ("bool", "number"):
        for m in members:
            refused = _no_coercion("in", item, m) if _kind(m) in ("bool", "number") else None
            if refused is not None:
                return refused
    return base_functions["_in_"](item, container)


def _mixed_arithmetic(op_name: str, op: Callable[[float, float], float]) -> Callable[[Any, Any], Any]:
    """Wrap base arithmetic so int with double gives a double (see the module docstring)."""
    base = base_functions[op_name]
    symbol = op_name.strip("_")

    def arithmetic(a: Any, b: Any) -> Any:
        early = _error_or_refusal(symbol, a, b)
        if early is not None:
            return early
        if _is_number(a) and _is_number(b) and type(a) is not type(b) and (
            isinstance(a, float) or isinstance(b, float)
        ):
            return celtypes.DoubleType(op(float(a), float(b)))  # ZeroDivisionError -> CEL error
        return base(a, b)

    arithmetic.__name__ = f"mixed{op_name}"
    return arithmetic


# --------------------------------------------------------------------------- helpers

def _where(value: Any) -> str:
    path = getattr(value, "path", None)
    return path if isinstance(path, str) else "the argument"


def _slice_metric_values(fname: str, slices_of: Any, metric: Any) -> list[tuple[str, int | float]] | CELEvalError:
    """Read ``metric`` from every slice of one attribute, or explain what is wrong."""
    if not isinstance(slices_of, celtypes.MapType):
        return CELEvalError(
            f"{fname}() needs the slices of one attribute (e.g. slices.group), "
            f"got {_describe(slices_of)}"
        )
    if not isinstance(metric, str):
        return CELEvalError(f"{fname}() needs a metric name string, got {_describe(metric)}")
    if len(slices_of) < 2:
        # One slice compares nothing: a fairness bound over it passes whatever the model does.
        reason = (f"{fname}(): {_where(slices_of)} has {len(slices_of)} slice(s); "
                  "comparing slices needs at least two")
        _refuse(reason)
        return CELEvalError(reason)
    values: list[tuple[str, int | float]] = []
    for slice_name in slices_of:
        per_slice = slices_of[slice_name]
        if not isinstance(per_slice, celtypes.MapType):
            return CELEvalError(
                f"{fname}(): slice {str(slice_name)!r} of {_where(slices_of)} is "
                f"{_describe(per_slice)}, not a mapping of metrics"
            )
        try:
            value = per_slice[metric]  # tracked: a miss is recorded as a missing metric
        except KeyError:
            return CELEvalError(
                f"{fname}(): slice {str(slice_name)!r} of {_where(slices_of)} has no metric {str(metric)!r}"
            )
        if not _is_number(value):
            return CELEvalError(
                f"{fname}(): {_where(per_slice)}.{metric} is {_describe(value)}, not a number"
            )
        values.append((str(slice_name), _py_number(value)))
    return values


def _record_helper(fname: str, slices_of: Any, metric: Any, value: Any) -> Any:
    """Report a helper's result next to the slice values it read (``max_gap(slices.group, "recall")``)."""
    tracker = getattr(slices_of, "tracker", None)
    if isinstance(tracker, Tracker):
        tracker.read(f"{fname}({_where(slices_of)}, {_quote(str(metric))})", value)
    return value


def cel_max_gap(slices_of: Any, metric: Any) -> Any:
    """Best minus worst value of ``metric`` over the slices of one attribute (a double)."""
    values = _slice_metric_values("max_gap", slices_of, metric)
    if isinstance(values, CELEvalError):
        return values
    numbers = [v for _, v in values]
    gap = celtypes.DoubleType(float(max(numbers)) - float(min(numbers)))
    return _record_helper("max_gap", slices_of, metric, gap)


def _extreme(fname: str, pick: Callable[[Iterable[Any]], Any], args: tuple[Any, ...]) -> Any:
    if len(args) == 2 and isinstance(args[0], celtypes.MapType):
        values = _slice_metric_values(fname, args[0], args[1])
        if isinstance(values, CELEvalError):
            return values
        return _record_helper(fname, args[0], args[1], _cel_number(pick(v for _, v in values)))
    if args and all(_is_number(a) for a in args):
        return _cel_number(pick(_py_number(a) for a in args))
    return CELEvalError(
        f"{fname}() takes (slices.<attribute>, \"metric\") or numbers, "
        f"got ({', '.join(_describe(a) for a in args)})"
    )


def cel_min(*args: Any) -> Any:
    """``min(slices.group, "recall")``: worst slice; ``min(a, b, ...)``: smallest number."""
    return _extreme("min", min, args)


def cel_max(*args: Any) -> Any:
    """``max(slices.group, "recall")``: best slice; ``max(a, b, ...)``: largest number."""
    return _extreme("max", max, args)


def cel_abs(value: Any) -> Any:
    """Absolute value of an int or double, keeping its type."""
    if isinstance(value, CELEvalError):
        return value
    if not _is_number(value):
        return CELEvalError(f"abs() needs a number, got {_describe(value)}")
    return _cel_number(abs(_py_number(value)))


EXTENSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "max_gap": cel_max_gap,
    "min": cel_min,
    "max": cel_max,
    "abs": cel_abs,
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    **EXTENSION_FUNCTIONS,
    "_<_": _heterogeneous("_<_", lambda a, b: a < b),
    "_<=_": _heterogeneous("_<=_", lambda a, b: a <= b),
    "_>_": _heterogeneous("_>_", lambda a, b: a > b),
    "_>=_": _heterogeneous("_>=_", lambda a, b: a >= b),
    "_==_": _strict_equality("_==_"),
    "_!=_": _strict_equality("_!=_"),
    "_in_": _strict_in,
    "_+_": _mixed_arithmetic("_+_", lambda a, b: a + b),
    "_-_": _mixed_arithmetic("_-_", lambda a, b: a - b),
    "_*_": _mixed_arithmetic("_*_", lambda a, b: a * b),
    "_/_": _mixed_arithmetic("_/_", lambda a, b: a / b),
}


# --------------------------------------------------------------------------- tracking

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def join_path(parent: str, key: Any) -> str:
    """``metrics.accuracy``; keys that are not identifiers use ``slices.age["18-25"]``."""
    key = str(key)
    if _IDENT.match(key):
        return f"{parent}.{key}"
    return f"{parent}[{_quote(key)}]"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Tracker:
    """What one evaluation read: leaf values by path, keys looked up but absent, and refusals.

    A refusal (a bool compared with a number, a quantifier over nothing) fails the
    expression even where CEL's error-absorbing ``||`` / ``&&`` would have hidden it.
    """

    reads: dict[str, Any] = field(default_factory=dict)
    # path -> (parent path, the keys the parent did have)
    missing: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    guard: int = 0  # >0 while inside has(), where an absent key is an answer, not an error

    def read(self, path: str, value: Any) -> None:
        self.reads.setdefault(path, to_plain(value))

    def miss(self, path: str, parent: str, available: list[str]) -> None:
        if self.guard == 0:
            self.missing.setdefault(path, (parent, available))


_CURRENT: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("mlspec_cel_tracker", default=None)


def _refuse(reason: str) -> None:
    tracker = _CURRENT.get()
    if tracker is not None and reason not in tracker.refusals:
        tracker.refusals.append(reason)


class TrackedMap(celtypes.MapType):
    """A CEL map that reports reads and misses to a :class:`Tracker`."""

    def __init__(self, items: Mapping[str, Any], path: str, tracker: Tracker) -> None:
        super().__init__()
        self.path = path
        self.tracker = tracker
        for key, value in items.items():
            dict.__setitem__(self, celtypes.StringType(key), _wrap(value, join_path(path, key), tracker))

    def __getitem__(self, key: Any) -> Any:
        try:
            value = super().__getitem__(key)
        except KeyError:
            self.tracker.miss(join_path(self.path, key), self.path, sorted(str(k) for k in self.keys()))
            raise
        if not isinstance(value, TrackedMap):
            self.tracker.read(join_path(self.path, key), value)
        return value


def _wrap(value: Any, path: str, tracker: Tracker) -> Any:
    """JSON value -> CEL value, with mappings (also inside lists) tracked."""
    if isinstance(value, Mapping):
        return TrackedMap(value, path, tracker)
    if isinstance(value, (list, tuple)):
        return celtypes.ListType([_wrap(v, f"{path}[{i}]", tracker) for i, v in enumerate(value)])
    return json_to_cel(value)


def to_plain(value: Any) -> Any:
    """CEL value -> plain JSON-friendly Python value, for reports."""
    if isinstance(value, (bool, celtypes.BoolType)):
        return bool(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(dict.__getitem__(value, k)) for k in value}  # type: ignore[index]  # a CEL MapType is a dict
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None:
        return None
    return str(value)


def _describe(value: Any) -> str:
    """``double 0.1``, ``a mapping``, ``string "x"``: for messages."""
    if isinstance(value, CELEvalError):
        return "an error"
    if isinstance(value, (bool, celtypes.BoolType)):
        return f"bool {str(bool(value)).lower()}"
    if isinstance(value, float):
        return f"double {float(value)!r}"
    if isinstance(value, int):
        return f"int {int(value)}"
    if isinstance(value, str):
        return f"string {_quote(str(value))}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if value is None:
        return "null"
    return type(value).__name__


describe_value = _describe


# Macros that iterate a collection and would answer for an empty one without judging anything.
_VACUOUS_MACROS = frozenset({"all", "filter", "map", "reduce"})


class _TrackingEvaluator(Evaluator):
    """Evaluator whose ``has()`` probes are not counted as missing metrics."""

    tracker: Tracker

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        sub = _TrackingEvaluator(ast, activation=self.activation)
        sub.tracker = self.tracker
        return sub

    def member_dot_arg(self, tree: lark.Tree) -> Any:
        """``x.all(v, p)`` (or ``filter``/``map``/``reduce``) over an empty list or map is refused.

        ``all`` over nothing is true of nothing, and ``x.filter(v, bad).size() == 0`` is the
        same claim spelled differently; a criterion must have something to judge.
        """
        macro = str(tree.children[1])
        if macro in _VACUOUS_MACROS:
            members = self.visit(tree.children[0])
            if not isinstance(members, CELEvalError) and isinstance(members, (celtypes.ListType, celtypes.MapType)) \
                    and len(members) == 0:
                reason = f"{macro}() over {_where(members) if isinstance(members, TrackedMap) else 'a list'} " \
                         "that is empty proves nothing"
                _refuse(reason)
                return CELEvalError(reason)
        return super().member_dot_arg(tree)

    def macro_has_eval(self, exprlist: lark.Tree) -> celtypes.BoolType:
        self.tracker.guard += 1
        try:
            return super().macro_has_eval(exprlist)
        finally:
            self.tracker.guard -= 1


class _TrackingRunner(celpy.InterpretedRunner):
    """InterpretedRunner that evaluates with :class:`_TrackingEvaluator`."""

    tracker: Tracker

    def evaluate(self, context: celpy.Context) -> celtypes.Value:
        evaluator = _TrackingEvaluator(ast=self.ast, activation=self.new_activation())
        evaluator.tracker = self.tracker
        return evaluator.evaluate(context)


_ENV: celpy.Environment | None = None


class _ParserOnDemand:
    """Stands in for celpy's shared Lark parser until a text must really be parsed.

    celpy's Environment wants its parser at construction, but evaluating a tree from the
    tree cache (below) needs none: loading the parser (~13 ms) and building its lexer on
    the first parse (~11 ms) are paid only when a text is not in the cache.
    """

    def parse(self, text: str) -> lark.Tree:
        return _parser().parse(text)


def _parser() -> lark.Lark:
    """celpy's real parser: from the private cache, else built by celpy (and cached)."""
    if isinstance(CELParser.CEL_PARSER, _ParserOnDemand):
        CELParser.CEL_PARSER = None
    tree_class = _TrackingRunner.tree_node_class
    _install_cached_parser(tree_class)
    CELParser(tree_class=tree_class)  # celpy's own build, when the cache did not provide one
    assert CELParser.CEL_PARSER is not None
    return CELParser.CEL_PARSER


def _environment() -> celpy.Environment:
    global _ENV
    if _ENV is None:
        if CELParser.CEL_PARSER is None:
            CELParser.CEL_PARSER = _ParserOnDemand()  # type: ignore[assignment]
        _ENV = celpy.Environment(runner_class=_TrackingRunner)
    return _ENV


# --------------------------------------------------------------------------- parser cache
#
# cel-python builds its Lark LALR parser (grammar analysis, ~105 ms idle, 200+ ms on a
# loaded machine) once per process, i.e. on every `mlspec verify` of a chain with
# objectives. The tables are the same every time, so they are cached on disk; loading
# takes ~10 ms. The cache is a pickle, and unpickling attacker-written data runs code,
# hence (docs/performance.md, "CEL parser cache"):
#
# * it lives only in a private directory: $MLSPEC_CACHE_DIR, else $XDG_CACHE_HOME/mlspec-attest,
#   else ~/.cache/mlspec-attest; created 0700; used only when, opened with O_NOFOLLOW and
#   checked with fstat on the open descriptor, it is a directory owned by this user with no
#   group/other permissions. The file is opened relative to that descriptor (no path race),
#   with O_NOFOLLOW, and must be a regular file owned by this user, mode 0600 or stricter,
#   under 4 MiB. Only someone who already runs code as this user (or root) can write it.
# * it is unpickled by an allow-list Unpickler: only the 8 lark/re classes a saved LALR
#   parser consists of can be constructed, so even a forged file cannot call anything else;
# * a key (sha256 of celpy's grammar and parser module, lark's version and Python's) is
#   checked before loading, so an upgrade rebuilds instead of using stale tables;
# * any doubt (wrong owner or mode, symlink, bad key, a load error) means: build the parser
#   as celpy always did and, if the directory is sound, replace the file (0600, atomically).
# MLSPEC_CEL_CACHE=0 disables it.

_CACHE_FILE = "cel-parser.v1.pickle"
_CACHE_MAX_BYTES = 4 * 1024 * 1024
_CACHE_ALLOWED = frozenset({
    ("lark.grammar", "RuleOptions"), ("lark.grammar", "Rule"), ("lark.grammar", "NonTerminal"),
    ("lark.grammar", "Terminal"), ("lark.lexer", "Token"), ("lark.utils", "fzset"),
    ("lark.parsers.grammar_analysis", "RulePtr"), ("re", "RegexFlag"),
})
# Lark's own list of options given at load time rather than stored (lark.lark._LOAD_ALLOWED_OPTIONS).
_LOAD_OPTIONS = ("postlex", "transformer", "lexer_callbacks", "use_bytes", "debug", "g_regex_flags", "regex",
                 "propagate_positions", "tree_class", "_plugins")


def _cache_dir() -> Path | None:
    if os.environ.get("MLSPEC_CEL_CACHE", "").strip() == "0":
        return None
    explicit = os.environ.get("MLSPEC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlspec-attest" if os.path.isabs(base) else None


def _private_dir_fd(directory: Path) -> int | None:
    """An O_NOFOLLOW descriptor of ``directory`` if it is ours and private (0700), else None."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat_mod.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


def _parser_key() -> bytes:
    import hashlib
    import sys

    from celpy import celparser

    h = hashlib.sha256()
    for source in (Path(celparser.__file__).with_name("cel.lark"), Path(celparser.__file__)):
        h.update(source.read_bytes())
    h.update(f"lark {lark.__version__} python {sys.version_info[:3]}".encode())
    return h.hexdigest().encode("ascii")


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CACHE_ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a saved parser")
        return super().find_class(module, name)


def _load_options(tree_class: type) -> dict[str, Any]:
    """What celpy.celparser.CELParser passes to Lark, for the options Lark takes at load time
    (tests/unit/verify/test_fast_paths.py compares them with a parser celpy built itself)."""
    return {"lexer_callbacks": {"IDENT": CELParser.ambiguous_literals}, "propagate_positions": True,
            "g_regex_flags": re.M, "debug": True, "tree_class": tree_class}


def _read_private(dir_fd: int, name: str, key: bytes) -> bytes | None:
    """The body of private cache file ``name`` (after its key line), if it is ours, 0600, bounded and keyed ``key``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat_mod.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077
                or st.st_size > _CACHE_MAX_BYTES):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(_CACHE_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    head, _, body = data.partition(b"\n")
    if head != key or len(data) > _CACHE_MAX_BYTES:
        return None
    return body


def _write_private(dir_fd: int, name: str, data: bytes) -> None:
    """Replace private cache file ``name`` atomically (0600, O_EXCL temp file, rename); errors are ignored."""
    if len(data) > _CACHE_MAX_BYTES:
        return
    tmp = f".{name}.{os.urandom(8).hex()}.tmp"  # not the pid: a crashed writer's leftover never blocks
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:  # os.write may write less (a full disk raises)
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass


def _read_cache(dir_fd: int, key: bytes, tree_class: type) -> lark.Lark | None:
    body = _read_private(dir_fd, _CACHE_FILE, key)
    if body is None:
        return None
    try:
        saved = _AllowListUnpickler(io.BytesIO(body)).load()
        return lark.Lark.__new__(lark.Lark)._load(saved, **_load_options(tree_class))
    except Exception:
        return None


def _write_cache(dir_fd: int, key: bytes, parser: lark.Lark) -> None:
    buf = io.BytesIO()
    buf.write(key + b"\n")
    parser.save(buf, _LOAD_OPTIONS)
    _write_private(dir_fd, _CACHE_FILE, buf.getvalue())


def _install_cached_parser(tree_class: type) -> None:
    """Give celpy its Lark parser from the private cache, or build it and cache it."""
    if CELParser.CEL_PARSER is not None:
        return
    directory = _cache_dir()
    dir_fd = _private_dir_fd(directory) if directory is not None else None
    if dir_fd is None:
        return  # celpy builds it, as always
    try:
        key = _parser_key()
        parser = _read_cache(dir_fd, key, tree_class)
        if parser is not None:
            CELParser.CEL_PARSER = parser
            return
        CELParser(tree_class=tree_class)  # celpy's own build
        if CELParser.CEL_PARSER is not None:
            _write_cache(dir_fd, key, CELParser.CEL_PARSER)
    except Exception:
        return
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- tree cache
#
# The same criteria and policy checks are parsed on every `mlspec verify`; their trees are
# kept in the same private directory, under the same rules as the parser (above): the file
# must be ours, 0600, bounded, keyed by the parser key (so another grammar or celpy never
# reuses a tree), and it is unpickled by an allow-list Unpickler that can build only lark's
# Tree, Meta and Token. A tree is found by the sha256 of the exact expression text; names
# are still checked against the caller's variables on every compile, and a text that does
# not parse is never cached (its refusal is parsed again, with its position). Whoever can
# write that file already runs code as this user (docs/performance.md, "CEL parser cache").

_TREES_FILE = "cel-trees.v2.pickle"
_TREES_MAX = 256  # distinct expressions kept on disk (a policy and objectives hold a few)
_TREE_MAX_BYTES = 64 * 1024  # a larger tree (a huge literal) is parsed every time instead
_TREES_ALLOWED = frozenset({("lark.tree", "Tree"), ("lark.tree", "Meta"), ("lark.lexer", "Token")})
# This process's view of the file: sha256(text) -> that tree, pickled once (None: not read yet).
# Each tree is pickled when it is parsed and unpickled when it is used, so saving the file costs
# the bytes it holds, never a re-pickling of every tree (the review's 16 large criteria: 136 MiB).
_TREES: dict[str, bytes] | None = None
_NO_CACHE: dict[str, bytes] = {}  # what _TREES is when no private directory is usable: parse, pickle nothing


class _TreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _TREES_ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CEL parse tree")
        return super().find_class(module, name)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name}: the tree index holds only str and bytes")


def _trees_key() -> bytes:
    tree_class = _TrackingRunner.tree_node_class
    return _parser_key() + f" trees {tree_class.__module__}.{tree_class.__qualname__}".encode()


def _load_trees() -> dict[str, bytes]:
    global _TREES
    if _TREES is None:
        directory = _cache_dir()
        dir_fd = _private_dir_fd(directory) if directory is not None else None
        _TREES = _NO_CACHE if dir_fd is None else {}
        if dir_fd is not None:
            try:
                body = _read_private(dir_fd, _TREES_FILE, _trees_key())
                value = _PlainUnpickler(io.BytesIO(body)).load() if body is not None else {}
                if isinstance(value, dict) and all(isinstance(k, str) and isinstance(t, bytes)
                                                   for k, t in value.items()):
                    _TREES = value
            except Exception:
                pass  # any doubt: parse again
            finally:
                os.close(dir_fd)
    return _TREES


def _save_trees(trees: dict[str, bytes]) -> None:
    directory = _cache_dir()
    dir_fd = _private_dir_fd(directory) if directory is not None else None
    if dir_fd is None:
        return
    try:
        _write_private(dir_fd, _TREES_FILE, _trees_key() + b"\n" + pickle.dumps(trees, protocol=5))
    except Exception:
        pass
    finally:
        os.close(dir_fd)


def _cached_tree(blob: bytes) -> lark.Tree | None:
    try:
        tree = _TreeUnpickler(io.BytesIO(blob)).load()
    except Exception:
        return None
    return tree if isinstance(tree, lark.Tree) else None


def _parse(text: str) -> lark.Tree:
    """celpy's parse tree of ``text`` (CELParseError as celpy raises it), from the tree cache when there."""
    import hashlib

    trees = _load_trees()
    if trees is _NO_CACHE:  # MLSPEC_CEL_CACHE=0, or no private directory to keep trees in
        return _environment().compile(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    blob = trees.get(digest)
    tree = _cached_tree(blob) if blob is not None else None
    if tree is None:
        tree = _environment().compile(text)
        try:
            blob = pickle.dumps(tree, protocol=5)
        except Exception:  # RecursionError on a pathological tree: parse it every time
            return tree
        if len(blob) <= _TREE_MAX_BYTES:
            trees.pop(digest, None)
            trees[digest] = blob  # newest last
            total = sum(len(b) for b in trees.values())
            while trees and (len(trees) > _TREES_MAX or total > _CACHE_MAX_BYTES - 64 * 1024):
                total -= len(trees.pop(next(iter(trees))))  # the oldest first
            _save_trees(trees)
    return tree


# --------------------------------------------------------------------------- compile

_COMPILED: dict[tuple[str, frozenset[str]], lark.Tree | ExpressionError] = {}
_COMPILED_MAX = 512  # distinct expressions one process keeps (a policy and objectives hold a few)


def compile_expression(text: str, variables: Collection[str]) -> lark.Tree:
    """Parse ``text`` and check its names; raise :class:`ExpressionError` with a position.

    Compiled once per process for each (expression text, variable names): the gate compiles
    every criterion in several checks, and a celpy parse costs milliseconds. The key is the
    exact text and the names it was checked against, so a cached tree (or refusal) is only
    ever returned for the same input; trees are never mutated by evaluation.
    """
    key = (text, frozenset(variables))
    cached = _COMPILED.get(key)
    if cached is None:
        try:
            cached = _compile_uncached(text, key[1])
        except ExpressionError as exc:
            cached = exc
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = cached
    if isinstance(cached, ExpressionError):
        raise ExpressionError(cached.reason, cached.line, cached.column)
    return cached


def _compile_uncached(text: str, variables: frozenset[str]) -> lark.Tree:
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is {len(text)} characters, over the {MAX_EXPRESSION_CHARS} limit")
    try:
        ast = _parse(text)
    except celpy.CELParseError as exc:
        raise ExpressionError(_syntax_reason(exc), exc.line, exc.column) from None
    except RecursionError:
        raise ExpressionError("expression nested too deeply") from None
    if _depth(ast) > MAX_TREE_DEPTH:
        raise ExpressionError("expression is nested too deeply; split it or remove parentheses", 1, 1)
    _check_names(ast, variables)
    return ast


def _depth(ast: lark.Tree) -> int:
    """Depth of the parse tree, computed without recursion."""
    deepest = 0
    stack: list[tuple[lark.Tree, int]] = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, lark.Tree))
    return deepest


def _syntax_reason(exc: celpy.CELParseError) -> str:
    """One-line description of a lark parse error (cel-python's own text spans lines)."""
    cause = exc.__context__
    if isinstance(cause, lark.exceptions.UnexpectedToken):
        if cause.token.type == "$END":
            reason = "syntax error: unexpected end of expression"
        else:
            reason = f"syntax error: unexpected {str(cause.token.value)!r}"
        expected = sorted(_TOKEN_NAMES[t] for t in cause.expected if t in _TOKEN_NAMES)
        if expected and len(cause.expected) <= 4:
            reason += f" (expected {' or '.join(expected)})"
        return reason
    if isinstance(cause, lark.exceptions.UnexpectedCharacters):
        return f"syntax error: unexpected character {cause.char!r}"
    first = str(exc).strip().splitlines()
    return "syntax error: " + (first[-1].strip() if first else "invalid expression")


def _check_names(ast: lark.Tree, variables: frozenset[str]) -> None:
    """Refuse unknown variables and functions, and the ``x.min(arg)`` trap, before signing."""
    bound: set[str] = set()
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) == 3:
            name = str(node.children[1])
            count = _MEMBER_MACROS.get(name, 0)
            exprs = node.children[2].children if isinstance(node.children[2], lark.Tree) else []
            for expr in exprs[:count]:
                ident = _bare_ident(expr)
                if ident is not None:
                    bound.add(ident)
    known_functions = set(FUNCTIONS) | set(base_functions) | _GLOBAL_MACROS
    for node in ast.iter_subtrees_topdown():
        if node.data == "member_dot_arg":
            token = node.children[1]
            name = str(token)
            has_args = len(node.children) == 3 and bool(getattr(node.children[2], "children", []))
            if name == "min" and has_args:
                raise ExpressionError(
                    "cel-python reads x.min(...) as its list macro and ignores the argument; "
                    "write min(slices.<attribute>, \"metric\") instead",
                    getattr(token, "line", None), getattr(token, "column", None),
                )
            if name not in _MEMBER_MACROS and name not in known_functions:
                raise ExpressionError(
                    f"unknown function {name!r} (extension functions: {', '.join(sorted(EXTENSION_FUNCTIONS))})",
                    getattr(token, "line", None), getattr(token, "column", None),
                )
        elif node.data in ("ident_arg", "dot_ident_arg"):
            token = node.children[0]
            name = str(token)
            if name not in known_functions:
                raise ExpressionError(
                    f"unknown function {name!r} (extension functions: {', '.join(sorted(EXTENSION_FUNCTIONS))})",
                    getattr(token, "line", None), getattr(token, "column", None),
                )
        elif node.data in ("ident", "dot_ident"):
            token = node.children[0]
            name = str(token)
            if name not in variables and name not in bound and name not in _BUILTIN_IDENTS:
                raise ExpressionError(
                    f"unknown variable {name!r} (variables: {', '.join(sorted(variables))})",
                    getattr(token, "line", None), getattr(token, "column", None),
                )


_SLICE_HELPERS = frozenset({"max_gap", "min", "max"})


def vacuity_notes(ast: lark.Tree) -> list[str]:
    """What the expression needs to be non-vacuous, for ``mlspec objectives check`` to warn about.

    The gate fails ``all()`` over an empty collection and a slice helper over fewer than
    two slices; saying so before signing avoids a surprise at deploy time.
    """
    notes: list[str] = []
    for node in ast.iter_subtrees_topdown():
        if node.data == "member_dot_arg" and str(node.children[1]) in _VACUOUS_MACROS:
            notes.append(f"{node.children[1]}() fails at the gate when its list or map is empty or missing")
        elif node.data == "member_dot_arg" and str(node.children[1]) in _SLICE_HELPERS:  # slices.g.max_gap("m")
            notes.append(f"{node.children[1]}() fails at the gate unless at least two slices carry the metric")
        elif node.data == "ident_arg" and str(node.children[0]) in _SLICE_HELPERS:
            args = node.children[1].children if len(node.children) > 1 and isinstance(node.children[1], lark.Tree) \
                else []
            reads_slices = len(args) == 2 and isinstance(args[0], lark.Tree) and any(
                t.data in ("ident", "dot_ident") for t in args[0].iter_subtrees())
            if reads_slices:
                notes.append(f"{node.children[0]}() fails at the gate unless at least two slices carry the metric")
    return list(dict.fromkeys(notes))


def _bare_ident(expr: Any) -> str | None:
    """The identifier an ``expr`` subtree consists of, if it is just one name."""
    node = expr
    while isinstance(node, lark.Tree):
        if node.data == "ident":
            return str(node.children[0])
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


# --------------------------------------------------------------------------- evaluate

@dataclass
class Evaluation:
    """Outcome of one expression: its value (or error), what it read, what was missing."""

    value: Any
    error: str | None
    reads: dict[str, Any]
    missing: dict[str, tuple[str, list[str]]]
    refusals: list[str] = field(default_factory=list)


def evaluate_expression(ast: lark.Tree, bindings: Mapping[str, Any]) -> Evaluation:
    """Evaluate a compiled expression over JSON ``bindings`` (name -> value), tracking reads."""
    tracker = Tracker()
    context = {name: _wrap(value, name, tracker) for name, value in bindings.items()}
    runner = _environment().program(ast, functions=FUNCTIONS)
    runner.tracker = tracker  # type: ignore[attr-defined]
    value: Any = None
    error: str | None = None
    token = _CURRENT.set(tracker)
    try:
        value = runner.evaluate(context)
    except CELEvalError as exc:
        error = _eval_reason(exc)
    except RecursionError:
        error = "expression nested too deeply to evaluate"
    except Exception as exc:  # cel-python can leak Python errors (e.g. 1/0); never a traceback
        error = f"{type(exc).__name__}: {exc}"
    finally:
        _CURRENT.reset(token)
    if tracker.refusals and error is None:
        error = "; ".join(tracker.refusals)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)) and error is None:
        error = "expression produced NaN or infinity"
    return Evaluation(value=value, error=error, reads=dict(tracker.reads), missing=dict(tracker.missing),
                      refusals=list(tracker.refusals))


def _eval_reason(exc: CELEvalError) -> str:
    message = str(exc.args[0]) if exc.args else "evaluation error"
    message = re.sub(r"Token\('RULE', '(\w+)'\)", r"\1", message)
    message = re.sub(r"<class 'celpy\.celtypes\.(\w+)'>", r"\1", message)
    if exc.column is not None:
        message += f" (at column {exc.column})"
    return message
