"""Label values go into KPI PromQL only as escaped string literal content."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.enrich import EnrichmentError
from receiver.enrich.promql import escape_regex, escape_string, placeholders, substitute

CONVERSION = (
    'sum(rate(checkout_completed_total{region="$region"}[5m]))'
    ' / sum(rate(checkout_started_total{region="$region"}[5m]))'
)


def unquote(literal: str) -> str:
    """A PromQL string literal's value; Python's escapes mean what Go's (PromQL's) do."""
    value = ast.literal_eval(literal)
    assert isinstance(value, str)
    return value


def closes_early(body: str, quote: str = '"') -> bool:
    """Whether the lexer would end the literal (or fail) inside ``body``."""
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] in (quote, "\n"):
            return True
        i += 1
    return False


def test_placeholders_take_the_group_label_values() -> None:
    labels = {"region": "eu", "env": "prod"}
    assert substitute(CONVERSION, labels) == (
        'sum(rate(checkout_completed_total{region="eu"}[5m]))'
        ' / sum(rate(checkout_started_total{region="eu"}[5m]))'
    )
    assert substitute('x{env="${env}-1", region="$region"}', labels) == (
        'x{env="prod-1", region="eu"}'
    )
    assert substitute('x{l="$region$env"}', labels) == 'x{l="euprod"}'


def test_promql_injection_through_a_label_value_is_neutralised() -> None:
    hostile = 'eu"} or vector(1) or up{x="'
    query = substitute(CONVERSION, {"region": hostile})
    assert query == (
        'sum(rate(checkout_completed_total{region="eu\\"} or vector(1) or up{x=\\""}[5m]))'
        ' / sum(rate(checkout_started_total{region="eu\\"} or vector(1) or up{x=\\""}[5m]))'
    )
    literal = query[query.index('"') : query.index("}[5m]")]
    assert unquote(literal) == hostile

    for value in [
        "\\",
        'eu\\"} or vector(1) #',
        "eu\\",  # a trailing backslash must not escape the closing quote
        'eu"}\n or vector(1) or up{x="',
        "eu\r\n\t\x00\x07\x1b\x7f\x85",
        "eu\u2028\u2029\u202e\u200b\ufeff",
        "züri-ост-東京-🚀",
        "\ufffd",
        "'",
        "$region",
        "${env}",
    ]:
        query = substitute('x{region="$region"}', {"region": value, "env": "prod"})
        body = query[len('x{region="') : -len('"}')]
        assert query.startswith('x{region="') and query.endswith('"}')
        assert not closes_early(body), value
        assert "\n" not in query and "\r" not in query
        assert unquote(f'"{body}"') == value


def test_values_are_escaped_the_way_the_promql_lexer_reads_them() -> None:
    assert escape_string('a"b\\c') == 'a\\"b\\\\c'
    assert escape_string("l1\nl2\r\t\a\b\f\v") == "l1\\nl2\\r\\t\\a\\b\\f\\v"
    assert escape_string("\x00\x1b\x7f\x85") == "\\u0000\\u001b\\u007f\\u0085"
    # Format characters are invisible in logs; U+FFFD would read as invalid UTF-8.
    assert escape_string("a\u202eb\ufffd") == "a\\u202eb\\ufffd"
    assert escape_string("\U000e0001") == "\\U000e0001"
    assert escape_string("züri 東京 🚀 'x'") == "züri 東京 🚀 'x'"
    # Inside single quotes the single quote is the one to escape.
    assert escape_string('it\'s "x"', quote="'") == 'it\\\'s "x"'
    assert substitute("x{region='$region'}", {"region": "o'k"}) == "x{region='o\\'k'}"


def test_a_value_that_is_not_unicode_is_refused() -> None:
    with pytest.raises(EnrichmentError, match="invalid Unicode code point U\\+D800"):
        substitute('x{region="$region"}', {"region": "eu\ud800"})


@given(st.text())
def test_any_value_stays_one_string_literal(value: str) -> None:
    try:
        query = substitute('x{region="$region", env="prod"}', {"region": value})
    except EnrichmentError:
        assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        return
    body = query[len('x{region="') : -len('", env="prod"}')]
    assert query == f'x{{region="{body}", env="prod"}}'
    assert not closes_early(body)
    assert unquote(f'"{body}"') == value


def test_regex_matcher_operands_match_the_value_literally() -> None:
    assert escape_regex("a.b*c(d)|e[f]{g}^h$i\\j+?") == (
        "a\\.b\\*c\\(d\\)\\|e\\[f\\]\\{g\\}\\^h\\$i\\\\j\\+\\?"
    )
    assert substitute('x{region=~"$region"}', {"region": ".*"}) == 'x{region=~"\\\\.\\\\*"}'
    assert substitute('x{region !~ "$region|global"}', {"region": "e."}) == (
        'x{region !~ "e\\\\.|global"}'
    )
    # An equality matcher takes the value as it is.
    assert substitute('x{region="$region"}', {"region": ".*"}) == 'x{region=".*"}'


def test_a_placeholder_outside_a_string_literal_is_refused() -> None:
    for query in [
        "rate(x[$window])",
        "x{region=$region}",
        "sum by ($region) (x)",
        "x * ${factor}",
    ]:
        with pytest.raises(EnrichmentError, match="outside a string literal"):
            substitute(query, {"window": "5m", "region": "eu", "factor": "2"})
        with pytest.raises(EnrichmentError, match="outside a string literal"):
            placeholders(query)


def test_a_placeholder_in_a_raw_string_is_refused() -> None:
    with pytest.raises(EnrichmentError, match=r"raw string at column 11.*double-quoted"):
        substitute("x{region=~`$region`}", {"region": "eu"})
    assert substitute("x{region=~`eu|us`}", {}) == "x{region=~`eu|us`}"


def test_a_placeholder_for_a_label_the_incident_lacks_is_refused() -> None:
    with pytest.raises(
        EnrichmentError,
        match=r'uses \$cluster but the incident has no "cluster" label '
        r"\(its group labels: env, region\)",
    ):
        substitute('x{cluster="$cluster"}', {"region": "eu", "env": "prod"})
    with pytest.raises(EnrichmentError, match="group labels: none"):
        substitute('x{region="$region"}', {})


def test_dollars_that_are_not_placeholders_stay() -> None:
    labels = {"region": "eu"}
    assert substitute('x{path=~"/api/.*$"}', labels) == 'x{path=~"/api/.*$"}'
    assert substitute('label_replace(x, "a", "$1-${1}", "b", "(.*)")', labels) == (
        'label_replace(x, "a", "$1-${1}", "b", "(.*)")'
    )
    assert substitute('label_replace(x, "a", "$$name", "b", "(?P<name>.*)")', labels) == (
        'label_replace(x, "a", "$name", "b", "(?P<name>.*)")'
    )
    with pytest.raises(EnrichmentError, match="malformed placeholder"):
        substitute('x{region="${region"}', labels)


def test_the_lexer_view_of_the_query_is_kept() -> None:
    labels = {"region": "eu"}
    # An escaped quote in the query does not end its literal; the placeholder is inside.
    assert substitute('x{l="say \\"$region\\""}', labels) == 'x{l="say \\"eu\\""}'
    # A # inside a literal is text; outside it starts a comment, copied as it is.
    assert substitute('x{l="#$region"} # per $region\n+ 1', labels) == (
        'x{l="#eu"} # per $region\n+ 1'
    )
    with pytest.raises(EnrichmentError, match="unterminated string literal at column 5"):
        substitute('x{l="$region}', labels)
    with pytest.raises(EnrichmentError, match="unterminated string literal"):
        substitute('x{l="eu\n"}', labels)


def test_placeholders_lists_the_labels_a_query_needs() -> None:
    assert placeholders(CONVERSION) == {"region"}
    assert placeholders('x{env="$env", region="${region}", l="$$x $1"}') == {"env", "region"}
    assert placeholders("sum(x)") == frozenset()
