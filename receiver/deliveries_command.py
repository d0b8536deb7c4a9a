"""``journey-receiver deliveries list | redrive``: a running receiver's outbox, over its API.

It asks the receiver (``GET /api/v1/deliveries``, ``POST /api/v1/deliveries/redrive``)
rather than the store, so it works on every store, ``memory://`` too, and goes through the
same roles as any client. The credential is ``JOURNEY_RECEIVER_TOKEN`` when set (an
operator's own token; never an argument, which ``ps`` would show), else one from the
config's ``server.auth``: for ``list`` a read token, else a write one, else an admin one
(the least that may read first), for ``redrive`` an admin token.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from receiver.errors import ConfigError
from receiver.redrive import Redrive
from receiver.terminal import shown

TOKEN_ENV = "JOURNEY_RECEIVER_TOKEN"  # noqa: S105 — the variable's name, not a token
STATES = ("dead", "retrying", "pending")
"""``list``'s states, in the order it prints them: what needs someone first."""
MAX_LIMIT = 1000
_PREFIX = "journey-receiver deliveries"
_COLUMNS = ("state", "id", "sink", "kind", "incident", "attempts", "when", "error")
# The token fields each action may use, the one tried first first.
_FIELDS = {
    "list": ("read_bearer_tokens", "bearer_tokens", "admin_bearer_tokens"),
    "redrive": ("admin_bearer_tokens",),
}
_ROLE = {"list": "a read token (or a write or admin one)", "redrive": "an admin token"}


def add_arguments(p: argparse.ArgumentParser, default_config: Path) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help=f"receiver.yaml, for the URL and a token (default {default_config} if present)",
    )
    common.add_argument(
        "--url",
        help="the receiver's base URL (default: http://<server.host>:<server.port> of the "
        "config, 127.0.0.1 for 0.0.0.0)",
    )
    common.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    actions = p.add_subparsers(dest="action", required=True, metavar="{list,redrive}")
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="deliveries not done: dead letters, retrying and pending jobs",
    )
    listing.add_argument(
        "--state", choices=STATES, action="append", help="only these (repeatable; default all)"
    )
    listing.add_argument(
        "--limit",
        type=_limit,
        default=100,
        help=f"at most this many per state (1-{MAX_LIMIT}, default 100)",
    )
    listing.add_argument(
        "--json", action="store_true", help='print {"deliveries": [...]}, errors in full'
    )
    redrive = actions.add_parser(
        "redrive",
        parents=[common],
        help="queue dead letters again (all, or those of --id / --sink)",
    )
    redrive.add_argument(
        "--id", action="append", default=[], help="a dead letter's job id (repeatable)"
    )
    redrive.add_argument("--sink", help="only the dead letters of this sink")
    redrive.add_argument(
        "--dry-run",
        action="store_true",
        help="list the dead letters it would queue again (of the 1,000 newest), and queue nothing",
    )


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_LIMIT}, not {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class _Credential:
    token: str | None
    source: str
    """Where the token came from, for messages: never the token itself."""


class _Refused(Exception):
    """The receiver answered, but not as asked; the message says what it said."""


def run(args: argparse.Namespace, base_url: str, config_path: Path | None) -> int:
    try:
        shown_base = _checked(base_url)
        credential = _credential(args.action, config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{_PREFIX}: or set {TOKEN_ENV} to the token to use", file=sys.stderr)
        return 1
    except _Refused as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return 1
    if credential.token and not _private(base_url):
        print(
            f"{_PREFIX}: warning: sending {credential.source} in clear text to {shown_base}",
            file=sys.stderr,
        )
    headers = {"Authorization": f"Bearer {credential.token}"} if credential.token else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=args.timeout) as client:
        try:
            if args.action == "list":
                return _list(client, args, credential)
            return _redrive(client, args, credential)
        except _Refused as exc:
            print(f"{_PREFIX}: {exc}", file=sys.stderr)
        except httpx.HTTPError as exc:
            print(
                f"{_PREFIX}: {shown_base}: {shown(str(exc))} (is the receiver running? --url)",
                file=sys.stderr,
            )
        return 1


def _checked(base_url: str) -> str:
    """``base_url`` as it may be printed (no user info, escaped); ``_Refused`` naming
    ``--url`` when it is no http(s) URL with a host."""
    from receiver.online import http_url, shown_url

    try:
        http_url(base_url)
    except ValueError as exc:
        raise _Refused(f"--url: {shown(str(exc))}") from None
    return shown(shown_url(base_url))


def _credential(action: str, config_path: Path | None) -> _Credential:
    given = os.environ.get(TOKEN_ENV)
    if given is not None and given.strip():
        return _Credential(_usable(given, TOKEN_ENV), TOKEN_ENV)
    if config_path is None:
        return _Credential(None, "no token")
    from receiver.config import load_auth

    fields = _FIELDS[action]
    unreadable: list[ConfigError] = []
    for name in fields:
        # One field at a time: a role's token that does not resolve (its variable unset
        # here) is no reason not to use the next one's.
        try:
            tokens = getattr(load_auth(config_path, (name,)), name)
        except ConfigError as exc:
            unreadable.append(exc)
            continue
        if tokens:
            where = f"server.auth.{name}[0] of {config_path}"
            return _Credential(_usable(tokens[0].get_secret_value(), where), where)
    if unreadable:
        raise unreadable[0]
    return _Credential(None, f"no token (none in server.auth.{fields[0]} of {config_path})")


def _usable(token: str, where: str) -> str:
    """``token`` as a header may carry it; the message never shows it."""
    token = token.strip()
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise _Refused(
            f"{where}: not a usable bearer token (it holds spaces, control or non-ASCII characters)"
        )
    return token


def _private(base_url: str) -> bool:
    """Whether a token may go to ``base_url`` without a warning: HTTPS, or this host."""
    url = httpx.URL(base_url)
    return url.scheme == "https" or loopback(url.host)


def loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _answer(response: httpx.Response, action: str, credential: _Credential) -> dict[str, Any]:
    request = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 200:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise _Refused(f"{request}: not a journey-receiver answer (a wrong --url?)")
        return answer
    try:
        said = response.json().get("error", "")
    except (ValueError, AttributeError):
        said = response.text
    why = f"{request}: HTTP {response.status_code}"
    if said:
        why += f": {shown(str(said))}"
    if response.status_code in (401, 403):
        why += f" ({action} takes {_ROLE[action]}; sent {credential.source})"
    raise _Refused(why)


def _fetch(
    client: httpx.Client, state: str, limit: int, action: str, credential: _Credential
) -> list[dict[str, Any]] | None:
    """The deliveries in ``state``; None when the receiver does not know the state (one
    older than this command lists dead letters only, and refuses the others' names)."""
    wanted: dict[str, str | int] = {"state": state, "limit": limit}
    response = client.get("/api/v1/deliveries", params=wanted)
    if response.status_code == 422 and state != "dead" and _names_field(response, "state"):
        return None
    answer = _answer(response, action, credential)
    deliveries = answer.get("deliveries")
    if not isinstance(deliveries, list) or not all(isinstance(d, dict) for d in deliveries):
        raise _Refused("GET /api/v1/deliveries: no list of deliveries in the answer")
    return deliveries


def _names_field(response: httpx.Response, name: str) -> bool:
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return False
    return isinstance(errors, list) and any(
        isinstance(e, dict) and e.get("field") == name for e in errors
    )


def _list(client: httpx.Client, args: argparse.Namespace, credential: _Credential) -> int:
    states = [s for s in STATES if s in args.state] if args.state else list(STATES)
    found: list[dict[str, Any]] = []
    unknown: list[str] = []
    for state in states:
        got = _fetch(client, state, args.limit, "list", credential)
        if got is None and args.state:
            raise _Refused(
                f"this receiver does not list {state} deliveries (a version older than "
                "this command: it lists dead ones only)"
            )
        if got is None:
            unknown.append(state)
        else:
            found += got
    if unknown:
        # What it could list is still worth printing: the dead letters need someone first.
        print(
            f"{_PREFIX}: this receiver does not list {' or '.join(unknown)} deliveries "
            "(a version older than this command): not shown",
            file=sys.stderr,
        )
        states = [s for s in states if s not in unknown]
    if args.json:
        print(json.dumps({"deliveries": found}, indent=2))
    elif found:
        print(_table([_row(d) for d in found]))
    else:
        named = ", ".join(states[:-1]) + (" or " if len(states) > 1 else "") + states[-1]
        print(f"no delivery {named}")
    return 0


def _row(delivery: dict[str, Any]) -> list[str]:
    state = delivery.get("state")
    if state == "dead":
        when = f"dead {delivery.get('dead_at')}"
    elif delivery.get("position"):
        when = f"after {delivery.get('position')} in its queue"
    elif delivery.get("sending"):
        when = "sending now"
    else:
        when = f"next {delivery.get('next_attempt_at')}"
    named = [delivery.get(k) for k in ("id", "sink", "kind", "incident", "attempts")]
    cells = [state, *named, when, delivery.get("error")]
    return [shown("" if cell is None else str(cell)) for cell in cells]


def _table(rows: Sequence[list[str]]) -> str:
    lines = [list(_COLUMNS), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _ids(given: object) -> list[str]:
    """Job ids of a redrive's answer, made printable."""
    if not isinstance(given, list) or not all(isinstance(j, str) for j in given):
        raise _Refused("POST /api/v1/deliveries/redrive: no list of job ids in the answer")
    return [shown(j) for j in given]


def _redrive(client: httpx.Client, args: argparse.Namespace, credential: _Credential) -> int:
    ids = list(dict.fromkeys(args.id))
    try:
        # The API's own check, so that a dry run refuses a misspelt sink as the API does.
        Redrive(sink=args.sink)
    except ValidationError as exc:
        (error,) = exc.errors()
        why = error.get("ctx", {}).get("error", error["msg"])
        raise _Refused(f"--sink {shown(args.sink)}: {why}") from exc
    if args.dry_run:
        letters = [
            d
            for d in _fetch(client, "dead", MAX_LIMIT, "redrive", credential)
            or ()  # dead: known to every version
            if (not ids or d.get("id") in ids) and (not args.sink or d.get("sink") == args.sink)
        ]
        if letters:
            print(_table([_row(d) for d in letters]))
        runs = sum(d.get("kind") == "run" for d in letters)
        print(
            f"would redrive {len(letters) - runs} dead letter(s) (one whose incident has "
            "expired by then is dropped)"
            + (f" and clear {runs} action run(s), never redriven" if runs else "")
            + "; nothing was queued"
        )
        done = len(letters)
    else:
        wanted: dict[str, Any] = {}
        if ids:
            wanted["ids"] = ids
        if args.sink:
            wanted["sink"] = args.sink
        answer = _answer(
            client.post("/api/v1/deliveries/redrive", json=wanted), "redrive", credential
        )
        jobs = _ids(answer.get("jobs"))
        # An older receiver does not clear runs: no "cleared" in its answer.
        cleared = _ids(answer.get("cleared", []))
        # Nor does it drop the dead letters of incidents that expired: no "expired".
        expired = _ids(answer.get("expired", []))
        if jobs:
            print(f"redriven {len(jobs)}: new job {', '.join(jobs)}")
        elif not cleared and not expired:
            print("no dead letter redriven")
        if cleared:
            print(f"cleared {len(cleared)} action run(s), never redriven: {', '.join(cleared)}")
        if expired:
            print(
                f"dropped {len(expired)} dead letter(s) whose incident has expired: "
                f"{', '.join(expired)}"
            )
        done = len(jobs) + len(cleared)
    missed = len(ids) - done if ids else 0
    if missed > 0:
        of_sink = f" of sink {shown(args.sink)}" if args.sink else ""
        verb = "would not be redriven" if args.dry_run else "not redriven"
        print(
            f"{_PREFIX}: {missed} of the {len(ids)} --id {verb}: no such dead letter{of_sink}, "
            "or its incident has expired",
            file=sys.stderr,
        )
        return 1
    return 0
