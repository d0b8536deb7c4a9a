"""``journey-receiver serve | check | explain | healthcheck | rules | replay | deliveries``."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from receiver import config
from receiver.config.source import read_document
from receiver.errors import ConfigError, PayloadError

DEFAULT_CONFIG = Path("config/receiver.yaml")


def _paths(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    cfg: Path | None = args.config
    if cfg is None and DEFAULT_CONFIG.exists():
        cfg = DEFAULT_CONFIG
    return cfg, args.journeys


# HTTP clients that log every request at INFO with its whole URL: a feed's or Alertmanager's
# may carry a credential in its query, and a reconcile every minute is noise, not news.
_QUIET_CLIENTS = ("httpx", "httpcore")


def log_to_stderr(level: str) -> None:
    """The receiver's log: one line per record at ``level``; the HTTP clients' own request
    lines only from WARNING."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for name in _QUIET_CLIENTS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.app import create_app
    from receiver.store.urls import shown_url
    from receiver.web.proxy import served

    log_to_stderr(args.log_level)
    from receiver.deliveries_command import loopback

    cfg_path, journeys_path = _paths(args)
    if cfg_path is None and not loopback(args.host):
        # Without a receiver.yaml there is no credential, and no allow_open to say that
        # running open is meant: open, then, only where nobody else can reach it.
        print(
            "no receiver.yaml (--config), so no credential: refusing to listen open on "
            f"{args.host or 'every address'}; pass --config, or --host 127.0.0.1 to try it "
            "on this machine",
            file=sys.stderr,
        )
        return 1
    try:
        app = create_app(cfg_path, journeys_path, handle_sighup=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    server = app.state.receiver.settings.config.server
    host = args.host or server.host
    port = args.port or server.port
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    cfg = app.state.receiver.settings.config
    greeting = (
        f"journey-receiver listening on http://{host}:{port} (store {shown_url(cfg.store.url)})"
    )
    if cfg.store.url.startswith("memory://"):
        # A trial on the embedded store: how to try it, with the credentials it asks for.
        auth = cfg.server.auth
        write = (
            " -H 'Authorization: Bearer <write token>'"
            if auth.bearer_tokens
            else " -u '<user>:<password>'"
            if auth.basic
            else ""
        )
        read = " -H 'Authorization: Bearer <read token>'" if auth.read_bearer_tokens else ""
        greeting += (
            ". Send it a deploy and a sample storm, wait group_wait, then read the incidents:\n"
            f"  curl -s -XPOST{write} -H 'Content-Type: application/json' "
            f"--data @examples/deploy.json http://{local}:{port}/api/v1/events\n"
            f'  sed "s/2026-04-18T10:02:11.482910331Z/$(date -u +%FT%TZ)/" examples/storm.json | '
            f"curl -s -XPOST{write} -H 'Content-Type: application/json' "
            f"--data @- http://{local}:{port}/webhook/alertmanager\n"
            f"  curl -s{read} http://{local}:{port}/api/v1/incidents"
        )

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # Only now is the port bound: a port in use never gets a greeting.
            if self.started:
                _settle_collector()
                print(greeting, file=sys.stderr, flush=True)

    config = uvicorn.Config(
        # X-Forwarded-* are read inside served(), after it noted the socket's peer: the
        # pages' trusted proxy is checked against that peer, never against a header.
        served(app),
        proxy_headers=False,
        host=host,
        port=port,
        timeout_keep_alive=int(server.keepalive_timeout),
        log_level=args.log_level,
        access_log=False,
    )
    try:
        Server(config).run()
    except SystemExit as exc:
        # uvicorn has logged why (e.g. "address already in use") and exits 3.
        print(f"cannot listen on {host}:{port}: see the error above", file=sys.stderr)
        return 1 if exc.code else 0
    return 0


# A webhook batch of 100 alerts allocates thousands of dicts and models; at Python's
# default first threshold (700) the collector ran several times per batch, about a tenth of
# the receiver's CPU under load (benchmarks/ingest.py); that path rarely makes cycles.
_GC_THRESHOLDS = (20_000, 20, 20)


def _settle_collector() -> None:
    """Once the app is up: what startup built (modules, config, clients) lives as long as
    the process, so the collector stops walking it (``gc.freeze``), and young collections
    are rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def healthcheck(args: argparse.Namespace) -> int:
    """GET /healthz on the port the config serves on (a container's HEALTHCHECK)."""
    import httpx

    cfg_path, _ = _paths(args)
    url = _local_url(cfg_path, args.port) + "/healthz"
    try:
        response = httpx.get(url, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"{url}: HTTP {response.status_code}", file=sys.stderr)
        return 1
    return 0


def _local_url(cfg_path: Path | None, port: int | None = None) -> str:
    """The base URL of the receiver serving ``cfg_path`` on this host (on ``port`` if
    given: serve's ``--port``)."""
    server = _server_section(cfg_path)
    host = str(server.get("host") or config.ServerConfig().host)
    written = server.get("port")
    if isinstance(written, str) and written.isascii() and written.isdigit():
        written = int(written)  # from ${PORT}: text until validated
    port = port or (written if isinstance(written, int) else config.ServerConfig().port)
    host = "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _server_section(path: Path | None) -> dict[str, Any]:
    """``server`` of receiver.yaml as written, unvalidated: a file edited into an invalid
    state is refused by the running receiver's reload, which keeps serving, so its health
    must not hang on the file being valid."""
    server = _section(path, "server")
    return server if isinstance(server, dict) else {}


def _section(path: Path | None, key: str) -> Any:
    """``key`` of receiver.yaml as written (``${VAR}`` read, as serve reads it),
    unvalidated; {} when absent or unreadable."""
    if path is None:
        return {}
    data = read_document(path).data
    found = data.get(key) if isinstance(data, dict) else None
    return found if found is not None else {}


def _group_by(cfg_path: Path | None) -> list[str]:
    """receiver.yaml's ``grouping.group_by`` as written, unvalidated; the default without."""
    grouping = _section(cfg_path, "grouping")
    group_by = grouping.get("group_by") if isinstance(grouping, dict) else None
    if isinstance(group_by, list) and all(isinstance(g, str) for g in group_by):
        return group_by
    return config.GroupingConfig().group_by


def check(args: argparse.Namespace) -> int:
    cfg_path, journeys_path = _paths(args)
    if cfg_path is None and journeys_path is None:
        print("nothing to check: pass --config and/or --journeys", file=sys.stderr)
        return 1
    if args.config is None and journeys_path is not None and not args.online:
        # A team lead checks their file alone, without the operators' secrets: the
        # receiver.yaml found lends its group_by (as for `rules`) and outbox.lease only.
        # (--online calls what receiver.yaml sets up: that needs all of it.)
        lease = config.written_lease(_section(cfg_path, "outbox"))
        problems, warnings = config.review(None, journeys_path, _group_by(cfg_path), lease)
        cfg_path = None
    else:
        problems, warnings = config.review(cfg_path, journeys_path)
    for problem in problems:
        print(problem, file=sys.stderr)
    for warning in warnings:
        # Valid, so not a problem (exit 0): serve would run it, and misbehave quietly.
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        if args.online:
            print("online check skipped: fix the config first", file=sys.stderr)
        return 1
    print("config OK")
    if cfg_path is not None:
        journeys = config.load(cfg_path, journeys_path)[1]
    else:
        assert journeys_path is not None
        journeys = config.load_journeys(journeys_path, offline=True)
    if not journeys.journeys:
        # Valid, and yet what serve warns of loudly: say it before a deploy, not after.
        print(
            "warning: no journeys configured: every alert would be filed under the built-in "
            "'unmapped' journey",
            file=sys.stderr,
        )
    if not args.online:
        return 0
    from receiver.online.runner import run

    return run(cfg_path, journeys_path)


def explain(args: argparse.Namespace) -> int:
    from receiver.explain import explain_batch

    cfg_path, journeys_path = _paths(args)
    if args.prometheus is not None:
        from receiver.online import http_url

        try:
            http_url(args.prometheus)
        except ValueError as exc:
            print(f"journey-receiver explain: --prometheus: {exc}", file=sys.stderr)
            return 1
    try:
        report = explain_batch(
            args.alerts.read_bytes(), cfg_path, journeys_path, prometheus_url=args.prometheus
        )
    except (ConfigError, PayloadError) as exc:
        detail = getattr(exc, "errors", None)
        print(f"{exc}" + (f"\n{json.dumps(detail, indent=2)}" if detail else ""), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot read {args.alerts}: {exc.strerror}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_json(), indent=2) if args.json else report.as_text())
    return 0


def rules(args: argparse.Namespace) -> int:
    """Print Prometheus rule groups for every journey KPI (``receiver/rules/``)."""
    from receiver.rules import RuleOptions, RulesError, rules_document, to_yaml

    cfg_path, journeys_path = _paths(args)
    try:
        options = RuleOptions(
            deviation_pct=args.deviation_pct,
            for_=args.for_,
            min_traffic_ratio=args.min_traffic_ratio,
            severity=args.severity,
            interval=args.interval,
        )
    except ValueError as exc:
        print(f"journey-receiver rules: {exc}", file=sys.stderr)
        return 1
    # Only journeys.yaml is validated: rules are built in CI, where the receiver's secrets
    # (${WEBHOOK_TOKEN}, ...) are not set; receiver.yaml lends its group_by and journeys_file.
    group_by = _group_by(cfg_path)
    if journeys_path is None:
        # As read, a journeys_file named in receiver.yaml is already relative to it.
        named = _section(cfg_path, "journeys_file")
        if isinstance(named, str) and named:
            journeys_path = Path(named)
        else:
            journeys_path = (
                Path("journeys.yaml") if cfg_path is None else cfg_path.parent / "journeys.yaml"
            )
    try:
        journeys = config.load_journeys(journeys_path, offline=True)
        document = rules_document(journeys, group_by, options)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except RulesError as exc:
        print(f"{journeys_path}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(to_yaml(document))
    return 0


def replay(args: argparse.Namespace) -> int:
    """Replay Prometheus' ALERTS through the receiver's own code (``receiver/replay/``)."""
    from receiver.replay.command import run

    cfg_path, journeys_path = _paths(args)
    return run(args, cfg_path, journeys_path)


def deliveries(args: argparse.Namespace) -> int:
    """List and redrive a running receiver's deliveries (``receiver/deliveries_command.py``)."""
    from receiver.deliveries_command import run

    cfg_path: Path | None = args.config
    if cfg_path is None and DEFAULT_CONFIG.exists():
        cfg_path = DEFAULT_CONFIG
    elif cfg_path is not None and not cfg_path.is_file():
        # Not a fall back to the defaults: they may well name another receiver.
        print(f"journey-receiver deliveries: --config {cfg_path}: no such file", file=sys.stderr)
        return 1
    return run(args, args.url or _local_url(cfg_path), cfg_path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="journey-receiver",
        description="One consolidated, business-ranked incident per customer journey.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def files(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config", type=Path, help=f"receiver.yaml (default {DEFAULT_CONFIG} if present)"
        )
        sp.add_argument(
            "--journeys", type=Path, help="journeys.yaml (default: journeys_file of the config)"
        )

    s = sub.add_parser("serve", help="run the receiver")
    files(s)
    s.add_argument("--host", help="listen address (default server.host, 0.0.0.0)")
    s.add_argument("--port", type=int, help="listen port (default server.port, 9095)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(run=serve)

    h = sub.add_parser("healthcheck", help="exit 0 when the receiver on the config's port is up")
    files(h)
    h.add_argument("--port", type=int, help="the port serve was given (default server.port)")
    h.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    h.set_defaults(run=healthcheck)

    c = sub.add_parser("check", help="validate receiver.yaml and journeys.yaml")
    files(c)
    c.add_argument(
        "--online",
        action="store_true",
        help="then call each configured system (Slack, Jira, PagerDuty, Prometheus, "
        "Alertmanager) and say what is missing; exit 1 on any problem",
    )
    c.set_defaults(run=check)

    e = sub.add_parser("explain", help="dry run of a webhook body; no network unless --prometheus")
    files(e)
    e.add_argument("--alerts", type=Path, required=True, help="webhook body (JSON file)")
    e.add_argument("--json", action="store_true", help="print JSON instead of text")
    e.add_argument(
        "--prometheus",
        metavar="URL",
        help="read the journeys' KPIs from this Prometheus now (the only network it uses)",
    )
    e.set_defaults(run=explain)

    r = sub.add_parser(
        "rules",
        help="print Prometheus rules (seasonal baseline, bands, traffic guard, alert) for "
        "every journey KPI",
    )
    files(r)
    r.add_argument(
        "--deviation-pct",
        type=float,
        default=30.0,
        help="how far past the baseline, in percent, in the KPI's bad direction pages (default 30)",
    )
    r.add_argument(
        "--for",
        dest="for_",
        metavar="DURATION",
        default="10m",
        help="how long the KPI must stay past its band before the alert fires (default 10m)",
    )
    r.add_argument(
        "--min-traffic-ratio",
        type=float,
        default=0.25,
        help="no page while the usual traffic at this hour is below this share of the last "
        "day's mean (default 0.25)",
    )
    r.add_argument("--severity", default="critical", help="severity label (default critical)")
    r.add_argument("--interval", help="evaluation interval of the groups (default: Prometheus')")
    r.set_defaults(run=rules)

    from receiver.replay.command import add_arguments

    y = sub.add_parser(
        "replay",
        help="replay ALERTS from Prometheus through grouping, blips and scoring: incidents, "
        "pages and Alertmanager's groups per journey; --against a journeys.yaml change",
    )
    files(y)
    add_arguments(y)
    y.set_defaults(run=replay)

    from receiver.deliveries_command import add_arguments as delivery_arguments

    d = sub.add_parser(
        "deliveries",
        help="list a running receiver's deliveries not done (dead, retrying, pending) and "
        "redrive dead letters",
    )
    delivery_arguments(d, DEFAULT_CONFIG)
    d.set_defaults(run=deliveries)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`replay --json | head`): no traceback, and Python's exit
        # must not flush into the closed pipe again. The shell's code for SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
