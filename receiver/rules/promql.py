"""A KPI query for one incident (``region="$region"``) turned into one query for all of them.

The enricher fills ``$region`` with one incident's value (``receiver/enrich/promql.py``); a
rule has no incident, so it asks for every region at once and keeps them apart:

- a matcher whose value is exactly a placeholder of its own label (``region="$region"``,
  ``region=~"${region}"``) is removed, or replaced by the stage's own matchers on that label
  (``env="$env"`` becomes ``env="prod"`` when the stage matches ``env="prod"``, so the alert
  can only carry a value the stage accepts);
- every aggregation over such a selector keeps the label: ``sum(...)`` becomes
  ``sum by (region) (...)`` and ``sum by (le) (...)`` becomes ``sum by (le, region) (...)``,
  so ``sum(a) / sum(b)`` still divides region by region.

A query without any aggregation (a recorded ``checkout:conversion:rate5m{region="$region"}``)
keeps every label of its series, and its alert fires per series.

Shapes that cannot be rewritten that way are refused with the reason: a placeholder inside a
longer value (``"$region-.*"``), under another label (``zone="$region"``) or behind ``!=``;
``without (region)``; ``scalar()``/``absent()`` over a placeholder's selector (they drop every
label); ``on()``/``ignoring()``/``group_left``/``group_right`` in a query with placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from receiver.enrich import EnrichmentError
from receiver.enrich.promql import placeholders
from receiver.matchers import Matcher

AGGREGATIONS = frozenset(
    {
        "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
        "quantile", "topk", "bottomk", "count_values",
    }
)  # fmt: skip
_LABEL_DROPPING = frozenset({"scalar", "absent", "absent_over_time"})
_VECTOR_MATCHING = frozenset({"on", "ignoring", "group_left", "group_right"})
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`[^`]*`)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<number>[0-9.][0-9A-Za-z_.]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^=<>(){}\[\],@])""",
    re.VERBOSE,
)
_WHOLE_PLACEHOLDER = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")


class QueryShapeError(ValueError):
    """The query cannot become one series per label set; the text says why."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str


def tokenize(query: str) -> list[Token]:
    """PromQL's tokens, whitespace and comments included, so that joining them gives
    ``query`` back."""
    tokens: list[Token] = []
    at = 0
    while at < len(query):
        found = _TOKEN.match(query, at)
        if found is None or found.lastgroup is None:
            raise QueryShapeError(f"cannot read the query at column {at + 1}: {query[at:][:20]!r}")
        tokens.append(Token(found.lastgroup, found.group()))
        at = found.end()
    return tokens


@dataclass(frozen=True, slots=True)
class GroupedQuery:
    """The rewritten query and the labels it now keeps apart (placeholders, in query order)."""

    query: str
    labels: tuple[str, ...]


def per_group(query: str, pinned: Mapping[str, Sequence[Matcher]]) -> GroupedQuery:
    """``query`` with its placeholder matchers turned into ``by (label)`` aggregations.

    ``pinned`` holds matchers that replace a removed placeholder matcher of their label.
    """
    try:
        if not placeholders(query):
            return GroupedQuery(query, ())
    except EnrichmentError as exc:
        raise QueryShapeError(str(exc)) from None
    tokens = tokenize(query)
    removed = _placeholder_matchers(tokens)
    code = [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]
    for i in code:
        if tokens[i].kind == "ident" and tokens[i].text in _VECTOR_MATCHING:
            raise QueryShapeError(
                f"{tokens[i].text}(...) vector matching is not rewritten for a query with "
                "placeholders: write it with aggregations that can keep the group labels"
            )
    _same_labels_each_side(tokens, code, removed)
    inserts: dict[int, str] = {}  # token index -> text written in place of that token
    for pos, i in enumerate(code):
        token = tokens[i]
        if token.kind != "ident" or pos + 1 >= len(code):
            continue
        following = tokens[code[pos + 1]].text
        if token.text in _LABEL_DROPPING and following == "(":
            inside = _labels_in(removed, i, _closing(tokens, code, pos + 1))
            if inside:
                raise QueryShapeError(
                    f"{token.text}() drops every label, so the {_names(inside)} of its "
                    "argument cannot be kept apart"
                )
        if token.text in AGGREGATIONS and following in ("(", "by", "without"):
            _group_aggregation(tokens, code, pos, removed, inserts)
    labels: list[str] = []
    for label in removed.values():
        if label not in labels:
            labels.append(label)
    for start, label in removed.items():
        end = _matcher_end(tokens, start)
        replacement = ", ".join(str(m) for m in pinned.get(label, ()))
        inserts[start] = replacement
        for i in range(start + 1, end + 1):
            inserts[i] = ""
        if not replacement:
            _drop_comma(tokens, start, end, inserts)
    _drop_empty_selectors(tokens, inserts)
    text = "".join(inserts.get(i, token.text) for i, token in enumerate(tokens))
    return GroupedQuery(text, tuple(labels))


def _same_labels_each_side(
    tokens: Sequence[Token], code: Sequence[int], removed: Mapping[int, str]
) -> None:
    """Refuse a top-level arithmetic or comparison whose sides keep apart different
    labels (``a{region="$region"} / b``, a region's share of the total): one side becomes
    ``by (region)``, the other does not, and their series never match, so the KPI would
    have no series at all, silently. A number on one side is fine."""
    depth = 0
    operands: list[list[int]] = [[]]
    for i in code:
        token = tokens[i]
        if token.text in ("(", "{", "["):
            depth += 1
        elif token.text in (")", "}", "]"):
            depth -= 1
        # An operator with nothing before it in its operand is a sign.
        if depth == 0 and token.kind == "op" and token.text in _BINARY and operands[-1]:
            operands.append([])
            continue
        operands[-1].append(i)
    sides = [
        {label for start, label in removed.items() if part[0] <= start <= part[-1]}
        for part in operands
        if part and not _scalar(tokens, part)
    ]
    if any(side != sides[0] for side in sides):
        uneven = sorted(set[str]().union(*sides) - sides[0].intersection(*sides[1:]))
        raise QueryShapeError(
            f"the sides of the expression keep apart different labels ({_names(uneven)} "
            "not on every side), so their series could never match: write each placeholder "
            "on every side"
        )


def _scalar(tokens: Sequence[Token], part: Sequence[int]) -> bool:
    """A number, or a call giving a scalar: it goes with any labels."""
    first = tokens[part[0]]
    return (len(part) == 1 and first.kind == "number") or (
        first.kind == "ident" and first.text in ("scalar", "time", "pi")
    )


def without_comments(query: str) -> str:
    """``query`` without its ``# ...`` comments: a rule wraps it in ``(...)[1m:1m]``, and a
    comment on its last line would swallow the closing parenthesis."""
    return "".join(t.text for t in tokenize(query) if t.kind != "comment").strip()


def top_level_denominator(query: str) -> str | None:
    """``B`` of a ratio ``A / B``, else None: the traffic of a ratio KPI (conversions per
    checkout started: checkouts started). The ratio may be scaled or complemented by a
    number (``100 * A / B``, ``(A / B) * 100``, ``A / B / 1000``, ``1 - A / B``): the traffic
    is the same."""
    written = tokenize(query)
    # Positions in ``written`` of the code (no spaces, no comments): the answer is cut out
    # of the query as written.
    code = [i for i, t in enumerate(written) if t.kind not in ("space", "comment")]
    tokens = [written[i] for i in code]
    lo, hi = 0, len(tokens)
    while lo < hi:
        part = tokens[lo:hi]
        split = _loosest_operator(part)
        if split is None:
            if part[0].text == "(" and _closing(written, code, lo) == code[hi - 1]:
                lo, hi = lo + 1, hi - 1  # the whole in parentheses
                continue
            return None
        op, left, right = part[split].text, part[:split], part[split + 1 :]
        if not right or right[0].text in ("bool", *_VECTOR_MATCHING):
            return None
        if op == "/" and not _scalar_tokens(right):
            return "".join(t.text for t in written[code[lo + split + 1] : code[hi - 1] + 1])
        # A number (or a scalar: no series, no traffic to read) on one side: the other.
        if op in ("*", "+", "-") and _scalar_tokens(left):
            lo += split + 1
        elif op in ("*", "/") and _scalar_tokens(right):
            hi = lo + split
        else:
            return None
    return None


# PromQL's binary operators, loosest first; all but ``^`` group from the left.
_PRECEDENCE = (
    frozenset({"or"}),
    frozenset({"and", "unless"}),
    frozenset({"==", "!=", "<", ">", "<=", ">="}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%"}),
    frozenset({"^"}),
)


def _loosest_operator(tokens: Sequence[Token]) -> int | None:
    """Index of the operator applied last at the top level of ``tokens`` (None: none)."""
    depth = 0
    found: list[tuple[int, int]] = []  # (level, index)
    for i, token in enumerate(tokens):
        if token.text in ("(", "{", "["):
            depth += 1
        elif token.text in (")", "}", "]"):
            depth -= 1
        elif depth == 0 and _binary_operator(token) and not _unary(tokens, i):
            level = next(n for n, ops in enumerate(_PRECEDENCE) if token.text in ops)
            found.append((level, i))
    if not found:
        return None
    loosest = min(level for level, _ in found)
    at_level = [i for level, i in found if level == loosest]
    # Left-grouping operators are applied last at their rightmost use; ``^`` at its first.
    return at_level[0] if loosest == len(_PRECEDENCE) - 1 else at_level[-1]


def _unary(tokens: Sequence[Token], i: int) -> bool:
    """A sign, not a subtraction: at the start, or after another operator or a ``(``."""
    if tokens[i].text not in ("+", "-"):
        return False
    return i == 0 or tokens[i - 1].text in ("(", ",") or _binary_operator(tokens[i - 1])


def _is_number(tokens: Sequence[Token]) -> bool:
    return len(tokens) == 1 and tokens[0].kind == "number"


_SCALARS = frozenset({"scalar", "time", "pi"})


def _is_scalar(tokens: Sequence[Token]) -> bool:
    """A number, or one call of ``scalar()``, ``time()`` or ``pi()``: a scalar, which a
    subquery (the rules' weeks ago and day's mean) cannot take."""
    return _is_number(tokens) or (
        len(tokens) >= 3
        and tokens[0].kind == "ident"
        and tokens[0].text in _SCALARS
        and _wrapped(tokens[1:])
    )


def is_scalar(query: str) -> bool:
    """Whether ``query`` gives a scalar, not a vector (``scalar(sum(x))``, ``time()``,
    ``scalar(a) / scalar(b)``, a number): the enricher reads one, a subquery cannot."""
    tokens = [t for t in tokenize(query) if t.kind not in ("space", "comment")]
    return bool(tokens) and _scalar_tokens(tokens)


def _scalar_tokens(tokens: Sequence[Token]) -> bool:
    while tokens and tokens[0].text in ("+", "-"):
        tokens = tokens[1:]  # a sign
    if not tokens:
        return False
    split = _loosest_operator(tokens)
    if split is not None:
        left, right = tokens[:split], tokens[split + 1 :]
        if right and right[0].text == "bool":
            right = right[1:]
        return _scalar_tokens(left) and _scalar_tokens(right)
    if _wrapped(tokens):
        return _scalar_tokens(tokens[1:-1])
    return _is_scalar(tokens)


def _wrapped(tokens: Sequence[Token]) -> bool:
    """The first token is a parenthesis, which closes at the last token."""
    if not tokens or tokens[0].text != "(":
        return False
    depth = 0
    for i, token in enumerate(tokens):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
            if depth == 0:
                return i == len(tokens) - 1
    return False


_BINARY = frozenset({"+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">="})


def _binary_operator(token: Token) -> bool:
    if token.kind == "op":
        return token.text in _BINARY
    return token.kind == "ident" and token.text in ("and", "or", "unless")


def _placeholder_matchers(tokens: Sequence[Token]) -> dict[int, str]:
    """Token index of each ``label="$label"`` matcher -> the label; other uses refused."""
    found: dict[int, str] = {}
    depth = 0
    code = [i for i, t in enumerate(tokens) if t.kind not in ("space", "comment")]
    for pos, i in enumerate(code):
        token = tokens[i]
        if token.text == "{":
            depth += 1
        elif token.text == "}":
            depth -= 1
        if token.kind != "string" or token.text.startswith("`"):
            continue
        names = placeholders(token.text)
        if not names:
            continue
        name_token = tokens[code[pos - 2]] if pos >= 2 else None
        operator = tokens[code[pos - 1]].text if pos >= 1 else ""
        whole = _WHOLE_PLACEHOLDER.fullmatch(token.text[1:-1])
        label = (whole.group(1) or whole.group(2)) if whole else None
        if depth != 1 or operator not in ("=", "=~") or name_token is None:
            raise QueryShapeError(
                f"placeholder {token.text} is not the value of a label matcher with = or =~: "
                'only matchers like region="$region" can become by (region)'
            )
        if label is None or name_token.text != label:
            raise QueryShapeError(
                f"{name_token.text}{operator}{token.text}: only a matcher whose value is "
                f'exactly its own label\'s placeholder ({name_token.text}="${name_token.text}") '
                f"can become by ({name_token.text})"
            )
        found[code[pos - 2]] = label
    return found


def _matcher_end(tokens: Sequence[Token], start: int) -> int:
    """Index of the matcher's string token, starting from its label name."""
    i = start
    while tokens[i].kind != "string":
        i += 1
    return i


def _drop_comma(tokens: Sequence[Token], start: int, end: int, inserts: dict[int, str]) -> None:
    """Remove the comma after a removed matcher (or, when it was the last, the one before)."""
    for i in range(end + 1, len(tokens)):
        if tokens[i].kind in ("space", "comment"):
            continue
        if tokens[i].text == ",":
            inserts[i] = ""
            return
        break
    for i in range(start - 1, -1, -1):
        if tokens[i].kind in ("space", "comment"):
            inserts[i] = ""
            continue
        if tokens[i].text == ",":
            inserts[i] = ""
        return


def _drop_empty_selectors(tokens: Sequence[Token], inserts: dict[int, str]) -> None:
    """``metric{}`` left by a removed matcher is written ``metric``; a selector without a
    metric name needs a matcher, so one left empty is refused."""
    opened: int | None = None
    for i, token in enumerate(tokens):
        if token.text == "{":
            opened = i
        elif token.text == "}" and opened is not None:
            inside = "".join(inserts.get(j, tokens[j].text) for j in range(opened + 1, i))
            if not inside.strip():
                before = [t for t in tokens[:opened] if t.kind not in ("space", "comment")]
                if not before or before[-1].kind != "ident":
                    raise QueryShapeError(
                        "a selector would be left without any matcher: name the metric or "
                        "keep another matcher beside the placeholder"
                    )
                for j in range(opened, i + 1):
                    inserts[j] = ""
            opened = None


def _closing(tokens: Sequence[Token], code: Sequence[int], open_pos: int) -> int:
    """Token index of the parenthesis closing the one at ``code[open_pos]``."""
    depth = 0
    for i in code[open_pos:]:
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise QueryShapeError("unbalanced parentheses")


def _labels_in(removed: Mapping[int, str], start: int, end: int) -> list[str]:
    labels: list[str] = []
    for i, label in sorted(removed.items()):
        if start < i < end and label not in labels:
            labels.append(label)
    return labels


def _names(labels: Iterable[str]) -> str:
    return "label" + ("s " if len(list(labels)) > 1 else " ") + ", ".join(labels)


def _group_aggregation(
    tokens: Sequence[Token],
    code: Sequence[int],
    pos: int,
    removed: Mapping[int, str],
    inserts: dict[int, str],
) -> None:
    """Add the placeholders' labels under the aggregation at ``code[pos]`` to its ``by``."""
    name = tokens[code[pos]].text
    after = pos + 1
    clause: tuple[str, int, int] | None = None  # keyword, index of "(", index of ")"
    if tokens[code[after]].text in ("by", "without"):
        clause = (tokens[code[after]].text, code[after + 1], _closing(tokens, code, after + 1))
        after = code.index(clause[2]) + 1
    args_open = code[after]
    args_close = _closing(tokens, code, after)
    trailing = code.index(args_close) + 1
    if clause is None and trailing < len(code) and tokens[code[trailing]].text in ("by", "without"):
        keyword_pos = trailing
        clause = (
            tokens[code[keyword_pos]].text,
            code[keyword_pos + 1],
            _closing(tokens, code, keyword_pos + 1),
        )
    inside = _labels_in(removed, args_open, args_close)
    if not inside:
        return
    if clause is None:
        inserts[code[pos]] = f"{name} by ({', '.join(inside)}) "
        return
    keyword, open_at, close_at = clause
    listed = [t.text for t in tokens[open_at + 1 : close_at] if t.kind == "ident"]
    if keyword == "without":
        dropped = [label for label in inside if label in listed]
        if dropped:
            raise QueryShapeError(
                f"{name} without ({', '.join(listed)}) drops the {_names(dropped)} the "
                "query is asked for"
            )
        return
    labels = listed + [label for label in inside if label not in listed]
    inserts[open_at] = "(" + ", ".join(labels)
    for i in range(open_at + 1, close_at):
        inserts[i] = ""
