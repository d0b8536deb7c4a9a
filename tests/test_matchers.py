from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.matchers import Matcher, parse_matcher


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('env="prod"', "env", "=", "prod"),
        ('team!="x"', "team", "!=", "x"),
        ('service=~"payment-service|payments-db"', "service", "=~", "payment-service|payments-db"),
        ('job!~"node.*"', "job", "!~", "node.*"),
        ("env=prod", "env", "=", "prod"),
        ("job!~node.*", "job", "!~", "node.*"),
        ('  env  =  "prod"  ', "env", "=", "prod"),
        ("env = prod ", "env", "=", "prod"),
        ('env=" prod "', "env", "=", " prod "),
        ('env=""', "env", "=", ""),
        ("env=", "env", "=", ""),
        ("env==prod", "env", "=", "=prod"),
        ("__name__=up", "__name__", "=", "up"),
        ("a:b=c", "a:b", "=", "c"),
        ('msg="a,b"', "msg", "=", "a,b"),
    ],
)
def test_parse(text: str, name: str, op: str, value: str) -> None:
    assert parse_matcher(text) == Matcher(name, op, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'quote="She said: \"Hi\""', 'She said: "Hi"'),
        (r'path="C:\\temp"', "C:\\temp"),
        (r'lines="one\ntwo"', "one\ntwo"),
        (r'spurious="a\tb"', "a\\tb"),  # not an escape Alertmanager knows: literal backslash
        (r"trailing=a\\", "a\\"),
        ("trailing=a\\", "a\\"),  # a backslash as the last character stays a backslash
        ("unquoted=one\\ntwo", "one\ntwo"),
        ('literal="one\ntwo"', "one\ntwo"),  # a real line feed is tolerated too
    ],
)
def test_parse_escapes_as_alertmanager(text: str, value: str) -> None:
    assert parse_matcher(text).value == value


_SHAPE = "expected name, operator (=, !=, =~, !~) and value"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("foo", f'bad matcher "foo": {_SHAPE}'),
        ("", f'bad matcher "": {_SHAPE}'),
        ('="x"', f'bad matcher "=\\"x\\"": {_SHAPE}'),
        ("1env=prod", f'bad matcher "1env=prod": {_SHAPE}'),
        ("my-label=x", f'bad matcher "my-label=x": {_SHAPE}'),
        ('env~="prod"', f'bad matcher "env~=\\"prod\\"": {_SHAPE}'),
        ('env="prod', 'bad matcher "env=\\"prod": missing closing double quote'),
        ('env="pr"od"', 'bad matcher "env=\\"pr\\"od\\"": unescaped double quote in value'),
        ('env=prod"', 'bad matcher "env=prod\\"": unescaped double quote in value'),
        ('env="prod\\"', 'bad matcher "env=\\"prod\\\\\\"": missing closing double quote'),
        ('service=~"("', 'invalid regex "(": missing )'),
        ('service!~"a)"', 'invalid regex "a)": unexpected )'),
        ('service=~"*"', 'invalid regex "*": no argument for repetition operator'),
        # Go's regexp (RE2) has no lookaround and no backreferences; neither do we.
        ('service=~"(?<=x)y"', 'invalid regex "(?<=x)y": invalid perl operator'),
        ('service=~"(a)\\\\1"', 'invalid regex "(a)\\\\1": invalid escape sequence'),
    ],
)
def test_parse_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_matcher(text)


def test_equal_and_not_equal() -> None:
    labels = {"env": "prod", "team": "payments"}
    assert parse_matcher('env="prod"').matches(labels)
    assert not parse_matcher('env="staging"').matches(labels)
    assert parse_matcher('env!="staging"').matches(labels)
    assert not parse_matcher('env!="prod"').matches(labels)
    assert not parse_matcher('env="Prod"').matches(labels)


def test_regex_is_anchored_at_both_ends() -> None:
    cart = parse_matcher('service=~"cart"')
    assert cart.matches({"service": "cart"})
    assert not cart.matches({"service": "cart-api"})
    assert not cart.matches({"service": "my-cart"})
    alternation = parse_matcher('service=~"payment-service|payments-db"')
    assert alternation.matches({"service": "payments-db"})
    assert not alternation.matches({"service": "payment-service-canary"})
    assert not alternation.matches({"service": "old-payments-db"})
    assert parse_matcher('service=~"cart(-.*)?"').matches({"service": "cart-api"})
    assert not parse_matcher('service!~"cart"').matches({"service": "cart"})
    assert parse_matcher('service!~"cart"').matches({"service": "cart-api"})


def test_regex_end_anchor_does_not_accept_a_trailing_newline() -> None:
    # Python's $ would; Alertmanager's (Go) does not.
    assert not parse_matcher('service=~"cart$"').matches({"service": "cart\n"})
    assert not parse_matcher('service=~"cart"').matches({"service": "cart\n"})


def test_regex_classes_are_ascii_like_go() -> None:
    digits = parse_matcher(r'code=~"\d+"')
    assert digits.matches({"code": "503"})
    assert not digits.matches({"code": "٥٠٣"})  # Arabic-Indic digits are not \d in RE2


def test_regex_flags() -> None:
    assert parse_matcher('service=~"(?i)CART"').matches({"service": "cart"})


def test_missing_label_is_the_empty_string() -> None:
    no_labels: dict[str, str] = {}
    assert parse_matcher('foo!="bar"').matches(no_labels)
    assert parse_matcher('foo=~".*"').matches(no_labels)
    assert parse_matcher('foo=""').matches(no_labels)
    assert not parse_matcher('foo=~".+"').matches(no_labels)
    assert not parse_matcher('foo="bar"').matches(no_labels)
    assert parse_matcher('foo!~"bar"').matches(no_labels)
    assert parse_matcher('foo=""').matches({"foo": ""})


def test_unicode() -> None:
    assert parse_matcher('city="Zürich"').matches({"city": "Zürich"})
    assert parse_matcher('city=~"Z.rich"').matches({"city": "Zürich"})
    assert parse_matcher('name=~"日本.*"').matches({"name": "日本語"})
    assert not parse_matcher('city="Zurich"').matches({"city": "Zürich"})


@pytest.mark.parametrize(
    "text",
    [
        'env="prod"',
        'service=~"payment-service|payments-db"',
        'job!~"node.*"',
        'team!=""',
        r'quote="She said: \"Hi\" \\o/\nbye"',
        'city="Zürich"',
    ],
)
def test_str_round_trips(text: str) -> None:
    matcher = parse_matcher(text)
    assert str(matcher) == text
    assert parse_matcher(str(matcher)) == matcher


def test_str_quotes_unquoted_input() -> None:
    assert str(parse_matcher("env = prod")) == 'env="prod"'


def test_constructor_compiles_and_validates() -> None:
    assert Matcher("service", "=~", "cart.*").matches({"service": "cart-api"})
    with pytest.raises(ValueError, match=r'^invalid regex "\[": '):
        Matcher("service", "=~", "[")
    with pytest.raises(ValueError, match="unknown matcher operator"):
        Matcher("service", "==", "x")  # type: ignore[arg-type]


def test_matchers_are_immutable_values() -> None:
    matcher = parse_matcher('env="prod"')
    with pytest.raises(AttributeError):
        matcher.value = "dev"  # type: ignore[misc]
    assert {matcher, parse_matcher("env=prod")} == {matcher}
    assert repr(matcher) == "Matcher(name='env', op='=', value='prod')"


@given(value=st.text(), op=st.sampled_from(["=", "!="]))
def test_any_value_round_trips_through_str(value: str, op: str) -> None:
    matcher = Matcher("label", op, value)  # type: ignore[arg-type]
    assert parse_matcher(str(matcher)) == matcher


def test_matching_takes_linear_time_on_hostile_label_values() -> None:
    # (a+)+$ backtracks exponentially in a backtracking engine; RE2 answers at once.
    matcher = parse_matcher('service=~"(a+)+"')
    assert not matcher.matches({"service": "a" * 5000 + "!"})
    assert matcher.matches({"service": "a" * 5000})
