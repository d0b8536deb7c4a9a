from __future__ import annotations

import base64

import pytest

from receiver.auth import Authenticator

WRITE = "w-token-1"
OTHER_WRITE = "w-token-2"
READ = "r-token"


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def full() -> Authenticator:
    return Authenticator([WRITE, OTHER_WRITE], ("alertmanager", "s3cret"), [READ])


def test_nothing_configured_means_open() -> None:
    auth = Authenticator([], None, [])

    assert auth.allows_write(None)
    assert auth.allows_read(None)
    assert auth.allows_write("Bearer anything")


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {WRITE}",
        f"Bearer {OTHER_WRITE}",
        f"bearer {WRITE}",
        f"BEARER {WRITE}",
        f"  Bearer   {WRITE}  ",
        f"Bearer\t{WRITE}",
    ],
)
def test_configured_bearer_token_may_write(header: str) -> None:
    assert full().allows_write(header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Bearer {WRITE[:-1]}",
        f"Bearer {WRITE}x",
        f"Bearer {WRITE} {WRITE}",
        f"Token {WRITE}",
        WRITE,
        f"Bearer {READ}",
    ],
)
def test_anything_else_may_not_write(header: str | None) -> None:
    assert not full().allows_write(header)


@pytest.mark.parametrize(
    "header", [basic("alertmanager:s3cret"), "basic " + basic("alertmanager:s3cret")[6:]]
)
def test_basic_credentials_may_write(header: str) -> None:
    assert full().allows_write(header)


@pytest.mark.parametrize(
    "header",
    [
        basic("alertmanager:wrong"),
        basic("someone:s3cret"),
        basic("alertmanager"),
        basic("alertmanager:s3cret:"),
        "Basic !!!not-base64!!!",
        "Basic YWxlcnRtYW5hZ2VyOnMzY3JldA",  # padding missing
        "Basic ",
        "Basic \u00e9\u00e9\u00e9\u00e9",
    ],
)
def test_wrong_or_malformed_basic_credentials_may_not_write(header: str) -> None:
    assert not full().allows_write(header)


def test_basic_header_is_refused_when_only_tokens_are_configured() -> None:
    auth = Authenticator([WRITE], None, [])

    assert not auth.allows_write(basic(f"x:{WRITE}"))
    assert auth.allows_write(f"Bearer {WRITE}")


def test_bearer_header_is_refused_when_only_basic_is_configured() -> None:
    auth = Authenticator([], ("alertmanager", "s3cret"), [])

    assert not auth.allows_write("Bearer s3cret")
    assert auth.allows_write(basic("alertmanager:s3cret"))


def test_non_ascii_header_is_refused_without_raising() -> None:
    assert not full().allows_write("Bearer t\u00f6ken\udcff")
    assert not full().allows_read("Bearer t\u00f6ken\udcff")


def test_reads_are_open_without_read_tokens_even_when_writes_are_closed() -> None:
    auth = Authenticator([WRITE], None, [])

    assert auth.allows_read(None)
    assert not auth.allows_write(None)


@pytest.mark.parametrize(
    "header",
    [f"Bearer {READ}", f"bearer {READ}", f"Bearer {WRITE}", basic("alertmanager:s3cret")],
)
def test_read_token_or_any_write_credential_may_read(header: str) -> None:
    assert full().allows_read(header)


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", f"Basic {READ}", basic(f"alertmanager:{READ}")]
)
def test_anything_else_may_not_read(header: str | None) -> None:
    assert not full().allows_read(header)


def test_read_token_alone_does_not_open_writes() -> None:
    auth = Authenticator([], None, [READ])

    assert auth.allows_write(None)
    assert not auth.allows_read(None)


@pytest.mark.parametrize(
    ("bearer", "basic_pair", "read"),
    [
        ([""], None, []),
        ([], None, [""]),
        ([], ("", "pw"), []),
        ([], ("user", ""), []),
        ([], ("us:er", "pw"), []),
    ],
)
def test_unusable_credentials_are_refused_at_construction(
    bearer: list[str], basic_pair: tuple[str, str] | None, read: list[str]
) -> None:
    with pytest.raises(ValueError, match=r"empty|cannot contain"):
        Authenticator(bearer, basic_pair, read)
