"""``journey-receiver deliveries list | redrive``: a running receiver's outbox, over its API.

It asks the receiver (``GET /api/v1/deliveries``, ``POST /api/v1/deliveries/redrive``)
rather than the store, so it works on every store, ``memory://`` too, and goes through the
same roles as any client. The credential is ``JOURNEY_RECEIVER_TOKEN`` when set (an
operator's own token; never an argument, which ``ps`` would show), else one from the
config's ``server.auth``: for ``list`` a read token, else an admin or write one (each may
read), for ``redrive`` an admin token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from receiver.errors import ConfigError
from receiver.terminal import shown

TOKEN_ENV = "JOURNEY_RECEIVER_TOKEN"  # noqa: S105 — the variable's name, not a token
STATES = ("dead", "retrying", "pending")
"""``list``'s states, in the order it prints them: what needs someone first."""
_PREFIX = "journey-receiver deliveries"
_COLUMNS = ("state", "id", "sink", "kind", "incident", "attempts", "when", "error")


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
        "--limit", type=int, default=100, help="at most this many per state (1-1000, default 100)"
    )
    listing.add_argument("--json", action="store_true", help='print {"deliveries": [...]}')
    redrive = actions.add_parser(
        "redrive",
        parents=[common],
        help="queue dead letters again (all, or those of --id / --sink)",
    )
    redrive.add_argument("--id", action="append", default=[], help="a dead letter's job id")
    redrive.add_argument("--sink", help="only the dead letters of this sink")


def run(args: argparse.Namespace, base_url: str, config_path: Path | None) -> int:
    try:
        token = _token(args.action, config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{_PREFIX}: or set {TOKEN_ENV} to the token to use", file=sys.stderr)
        return 1
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=args.timeout) as client:
        try:
            if args.action == "list":
                return _list(client, args)
            return _redrive(client, args)
        except _Refused as exc:
            print(f"{_PREFIX}: {exc}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(f"{_PREFIX}: {base_url}: {exc} (is the receiver running? --url)", file=sys.stderr)
            return 1


class _Refused(Exception):
    """The receiver answered, but not 200; the message says what it said."""


def _token(action: str, config_path: Path | None) -> str | None:
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    if config_path is None:
        return None
    from receiver.config import load_auth

    auth = load_auth(config_path)
    roles = (
        [auth.admin_bearer_tokens]
        if action == "redrive"
        else [auth.read_bearer_tokens, auth.admin_bearer_tokens, auth.bearer_tokens]
    )
    for tokens in roles:
        if tokens:
            return tokens[0].get_secret_value()
    return None


def _answer(response: httpx.Response) -> Any:
    if response.status_code == 200:
        return response.json()
    try:
        said = str(response.json().get("error", ""))
    except ValueError:
        said = response.text
    why = f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
    if said:
        why += f": {shown(said)}"
    if response.status_code in (401, 403):
        why += f" (set {TOKEN_ENV} to a token of that role, or give --config with one)"
    raise _Refused(why)


def _list(client: httpx.Client, args: argparse.Namespace) -> int:
    states = [s for s in STATES if s in args.state] if args.state else list(STATES)
    found: list[dict[str, Any]] = []
    for state in states:
        wanted = {"state": state, "limit": args.limit}
        answer = _answer(client.get("/api/v1/deliveries", params=wanted))
        found += answer["deliveries"]
    if args.json:
        print(json.dumps({"deliveries": found}, indent=2))
    elif found:
        print(_table([_row(d) for d in found]))
    else:
        named = ", ".join(states[:-1]) + (" or " if len(states) > 1 else "") + states[-1]
        print(f"no delivery {named}")
    return 0


def _row(delivery: dict[str, Any]) -> list[str]:
    state = str(delivery["state"])
    if state == "dead":
        when = f"dead {delivery['dead_at']}"
    elif delivery["position"]:
        when = f"after {delivery['position']} in its queue"
    else:
        when = f"next {delivery['next_attempt_at']}"
    return [
        state,
        shown(str(delivery["id"])),
        shown(str(delivery["sink"])),
        shown(str(delivery["kind"])),
        shown(str(delivery["incident"])),
        str(delivery["attempts"]),
        when,
        shown(str(delivery["error"] or "")),
    ]


def _table(rows: Sequence[list[str]]) -> str:
    lines = [list(_COLUMNS), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _redrive(client: httpx.Client, args: argparse.Namespace) -> int:
    wanted: dict[str, Any] = {}
    if args.id:
        wanted["ids"] = args.id
    if args.sink:
        wanted["sink"] = args.sink
    answer = _answer(client.post("/api/v1/deliveries/redrive", json=wanted))
    jobs = [str(j) for j in answer["jobs"]]
    if jobs:
        print(f"redriven {len(jobs)}: new job {', '.join(shown(j) for j in jobs)}")
    else:
        print("no dead letter redriven")
    missed = len(args.id) - len(jobs) if args.id else 0
    if missed > 0:
        of_sink = f" of sink {shown(args.sink)}" if args.sink else ""
        print(
            f"{_PREFIX}: {missed} of the {len(args.id)} --id not redriven: no such dead "
            f"letter{of_sink}, or its incident has expired",
            file=sys.stderr,
        )
        return 1
    return 0
