"""``create_app(...) -> Starlette``: the lifespan builds the store, sinks and scheduler loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette

from receiver import api, config, scheduler
from receiver.act.runs import Runs
from receiver.alertmanager.client import AlertmanagerClient
from receiver.alertmanager.peer import Peer
from receiver.auth import Authenticator
from receiver.enrich.enricher import Enricher
from receiver.enrich.feed_registry import build_feeds
from receiver.enrich.prometheus import PrometheusKpis
from receiver.errors import ConfigError, ConfigProblem
from receiver.incident import rfc3339, title
from receiver.metrics import Metrics
from receiver.outbox import Outbox
from receiver.outcomes.health import refresh_journey_metrics
from receiver.outcomes.stats import refresh_metrics
from receiver.pipeline import Clock, Pipeline
from receiver.retired import Closable
from receiver.settings import Settings, ms
from receiver.sinks import Sink, registry
from receiver.store import GroupStore, StoreSettings, open_store
from receiver.store.records import IncidentState
from receiver.store.redis import RedisStore
from receiver.web import routes as web

logger = logging.getLogger("journey_receiver")
T = TypeVar("T")


def authenticator(settings: Settings) -> Authenticator:
    auth = settings.config.server.auth
    return Authenticator(
        bearer_tokens=[t.get_secret_value() for t in auth.bearer_tokens],
        basic=(
            (auth.basic.username, auth.basic.password.get_secret_value()) if auth.basic else None
        ),
        read_bearer_tokens=[t.get_secret_value() for t in auth.read_bearer_tokens],
        admin_bearer_tokens=[t.get_secret_value() for t in auth.admin_bearer_tokens],
    )


def store_settings(settings: Settings) -> StoreSettings:
    cfg = settings.config
    return StoreSettings(
        key_prefix=cfg.store.key_prefix,
        retention_ms=ms(cfg.store.retention),
        events_retention_ms=ms(cfg.events.retention),
        group_wait_ms=settings.timers.group_wait_ms,
        reopen_window_ms=ms(cfg.grouping.reopen_window),
        replica_acks=cfg.store.replica_acks,
        replica_ack_timeout_ms=ms(cfg.store.replica_ack_timeout),
        max_alerts_per_incident=cfg.store.max_alerts_per_incident,
    )


CHART_THREADS = 2
"""Prometheus queries the incident pages may run at once, beside enrichment's own."""


def enricher_for(
    settings: Settings, store: GroupStore, made: list[Closable] | None = None
) -> Enricher:
    """``made``: each client as it is built, for the caller to close should a later one
    fail to build."""
    cfg = settings.config
    made = [] if made is None else made
    kpis = PrometheusKpis(cfg.prometheus) if cfg.prometheus.url else None
    made.extend([kpis] if kpis else [])
    return Enricher(
        store,
        kpis,
        build_feeds(cfg.events.feeds, made=made),
        lookback_s=cfg.events.lookback,
        baseline_offset_s=cfg.prometheus.baseline_offset,
        scope_labels=cfg.events.scope_labels,
        chart_source=(
            PrometheusKpis(cfg.prometheus, max_threads=CHART_THREADS)
            if cfg.prometheus.url
            else None
        ),
        budget_s=cfg.prometheus.budget,
    )


class Receiver:
    """One running receiver: its settings, store, pipeline and the files to reload from."""

    def __init__(
        self,
        config_path: Path | None,
        journeys_path: Path | None,
        *,
        clock: Clock,
        store: GroupStore | None = None,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.config_path = config_path
        self.journeys_path = journeys_path
        self.clock = clock
        self.metrics = Metrics()
        self.settings = self._load()
        # What a reload cannot change under a running receiver is what it started with.
        self._started_with = self.settings.config
        self.auth = authenticator(self.settings)
        self.store: GroupStore = store or open_store(
            self.settings.config.store.url,
            store_settings(self.settings),
            self.metrics.observe_store,
        )
        self.enricher = enricher_for(self.settings, self.store)
        # Sinks given by the caller (tests) are kept across reloads; built ones are rebuilt.
        self._builds_sinks = sinks is None
        built = sinks if sinks is not None else self._build_sinks(self.settings.config)
        self.pipeline = Pipeline(
            self.store, self.settings, built.keys(), self.metrics, clock, self.enricher
        )
        self.outbox = Outbox(
            self.store, built, self.settings, self.metrics, clock, self.pipeline.incident
        )
        self.runs = Runs(self.pipeline)
        self.pipeline.runs = self.outbox.runs = self.runs
        self.peer = Peer(self.settings.config.alertmanager, self.pipeline, self.store, self.metrics)
        self.metrics.config_last_reload_success.set(1)
        self._warn()

    @property
    def alertmanager(self) -> AlertmanagerClient | None:
        return self.peer.client

    def _warn(self) -> None:
        """Say loudly what a newcomer would otherwise find out from their pager."""
        if not self.settings.journeys.journeys:
            logger.warning(
                "no journeys configured (%s): every alert will be filed under the built-in "
                "'unmapped' journey. Pass --config config/receiver.yaml or --journeys FILE",
                f"journeys file {self.journeys_path or self.settings.config.journeys_file}"
                if self.config_path or self.journeys_path
                else "no --config and no --journeys given",
            )
        auth = self.settings.config.server.auth
        if auth.metrics_need_read_token and not auth.read_bearer_tokens:
            logger.warning(
                "server.auth.metrics_need_read_token is set but no read_bearer_tokens are: "
                "reads are open, so /metrics stays open too"
            )
        if self.auth.write_open:
            # Only on purpose (server.auth.allow_open, or no config file at all): the loader
            # refuses a config that is open by mistake. Still said loudly.
            logger.warning(
                "no server.auth credentials configured: anyone who can reach this port may "
                "post alerts and events, reload the config and redrive deliveries"
            )

    def _load(self) -> Settings:
        if self.config_path is None:
            cfg = config.ReceiverConfig()
            journeys = (
                config.load_journeys(self.journeys_path, cfg)
                if self.journeys_path
                else config.JourneysConfig()
            )
        else:
            cfg, journeys = config.load(self.config_path, self.journeys_path)
            # What `check` warns of, said where operators look: valid, so it runs as
            # written (an unreachable stage, a matcher keeping its quotes, ...).
            for warning in config.review(self.config_path, self.journeys_path)[1]:
                logger.warning("config: %s", warning)
        return Settings.build(cfg, journeys)

    def reload(self) -> list[str]:
        """Re-read both files; on any error raise ConfigError and keep the running config.
        The fields that changed but take effect only after a restart."""
        try:
            settings = self._load()
        except ConfigError:
            self.metrics.config_reloads.labels("failure").inc()
            self.metrics.config_last_reload_success.set(0)
            raise
        old = self.settings.config
        # The store holds every incident: it is not swapped under a running receiver (its
        # other settings, retention and the like, apply at once: configure below); nor is
        # the socket the server listens on. Against what runs, so that a second reload
        # says it again, and one that puts the value back says nothing.
        running = self._started_with
        later = [
            f"{section}.{name}"
            for section, names in (
                ("store", ("url", "key_prefix")),
                ("server", ("host", "port", "keepalive_timeout")),
            )
            for name in names
            if getattr(getattr(settings.config, section), name)
            != getattr(getattr(running, section), name)
        ]
        if later:
            logger.warning("reload: %s changed: takes effect after a restart", ", ".join(later))
        # New clients are built before anything is swapped: one that cannot be built
        # rejects the reload like an invalid file, and the running ones stay (those built
        # before it are closed with the next round's retired clients).
        built: list[Closable] = []
        new = settings.config
        sinks = am = None
        enricher = None
        try:
            if self._sinks_changed(new, old):
                sinks = self._built("sinks", lambda made: self._build_sinks(new, made))
                built.extend(sinks.values())
            if (new.prometheus, new.events) != (old.prometheus, old.events):
                enricher = self._built(
                    "prometheus", lambda made: enricher_for(settings, self.store, made)
                )
                built.append(enricher)
            if new.alertmanager != old.alertmanager and new.alertmanager is not None:
                wanted = new.alertmanager
                am = self._built("alertmanager", lambda made: AlertmanagerClient(wanted))
        except ConfigError:
            for client in built:
                self.peer.retire(client)
            raise
        if new.alertmanager != old.alertmanager:
            self.peer.replace(new.alertmanager, am)
            logger.info("reload: Alertmanager client rebuilt")
        if sinks is not None:
            self.outbox.replace_sinks(sinks)
            self.pipeline.sinks = frozenset(sinks)
            logger.info("reload: sinks rebuilt: %s", ", ".join(sorted(sinks)) or "none")
        if enricher is not None:
            self.pipeline.replace_enricher(enricher)
            self.enricher = enricher
            logger.info("reload: Prometheus and change feeds rebuilt")
        if settings.timers.any_shorter_than(self.settings.timers):
            self.pipeline.look_again = True
        if (settings.rules, settings.weights) != (self.settings.rules, self.settings.weights):
            self.pipeline.rescore = True
        if _acting(settings) != _acting(self.settings):
            # A journey now at auto (or an action, or the guard rails, changed): its open
            # incidents are decided again now, so a run whose conditions hold is asked for
            # without waiting for the next alert.
            self.pipeline.rescore = True
        self.settings = settings
        self.pipeline.settings = settings
        self.outbox.settings = settings
        self.auth = authenticator(settings)
        self._warn()
        if isinstance(self.store, RedisStore):
            self.store.configure(store_settings(settings))
        self.peer.store_retention_ms = ms(settings.config.store.retention)
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_last_reload_success.set(1)
        logger.info("reload: config and journeys reloaded")
        return later

    def _sinks_changed(self, new: config.ReceiverConfig, old: config.ReceiverConfig) -> bool:
        """Whether the sinks must be rebuilt: their config, the links they make, the Slack
        buttons' default (on once inbound.slack is set), or the store's retention (how long
        PagerDuty's routing keys are kept) changed."""
        if not self._builds_sinks:
            return False

        def parts(c: config.ReceiverConfig) -> tuple[object, ...]:
            return (c.sinks, c.server.external_url, c.inbound.slack, c.store.retention)

        return parts(new) != parts(old)

    def _built(self, section: str, build: Callable[[list[Closable]], T]) -> T:
        """``build(made)``, or ConfigError naming ``section`` when it raises; the clients
        it had made by then (``made``) are closed next round."""
        made: list[Closable] = []
        try:
            return build(made)
        except Exception as exc:
            for client in made:
                self.peer.retire(client)
            self.metrics.config_reloads.labels("failure").inc()
            self.metrics.config_last_reload_success.set(0)
            # Only the kind of failure and a file's own words: a client's message might
            # quote a credential.
            why = f"{type(exc).__name__}" + (
                f": {exc.strerror}" if isinstance(exc, OSError) else ""
            )
            where = str(self.config_path or "receiver.yaml")
            problem = ConfigProblem(where, None, section, f"cannot build: {why}")
            raise ConfigError([problem]) from exc

    def _build_sinks(
        self, cfg: config.ReceiverConfig, made: list[Closable] | None = None
    ) -> dict[str, Sink]:
        # Every replica shares what the sinks learn (Slack channel ids) through the store.
        return registry.build(cfg, cache=self.store.cache, metrics=self.metrics, made=made)

    def summary(self, st: IncidentState) -> dict[str, Any]:
        """The list's view of an incident: scored and titled exactly as its detail is."""
        impact = self.settings.impact(st)
        return {
            "id": st.id,
            "key": st.key,
            "journey": st.journey,
            "status": st.status,
            "priority": impact.priority,
            "score": impact.score,
            "title": title(st, impact),
            "alert_count": st.alert_count,
            "firing_count": st.firing_count,
            "created_at": rfc3339(st.created_at),
            "updated_at": rfc3339(st.changed_at),
        }

    async def aclose(self) -> None:
        await self.peer.aclose()
        await self.outbox.aclose()
        await self.runs.aclose()
        await self.pipeline.aclose()
        await self.store.aclose()


def create_app(
    config_path: Path | None = None,
    journeys_path: Path | None = None,
    *,
    clock: Clock = time.time,
    store: GroupStore | None = None,
    sinks: Mapping[str, Sink] | None = None,
    run_scheduler: bool = True,
    handle_sighup: bool = False,
) -> Starlette:
    receiver = Receiver(config_path, journeys_path, clock=clock, store=store, sinks=sinks)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if handle_sighup:
            loop.add_signal_handler(signal.SIGHUP, _reload_quietly, receiver)
        stop = anyio.Event()
        task = (
            asyncio.create_task(
                scheduler.run(receiver.pipeline, receiver.outbox, stop, receiver.peer)
            )
            if run_scheduler
            else None
        )
        figures = asyncio.create_task(_refresh_figures(receiver, stop)) if run_scheduler else None
        try:
            yield
        finally:
            if figures is not None:
                stop.set()
                figures.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await figures
            if task is not None:
                stop.set()
                drain = receiver.settings.config.scheduler.drain
                # What does not finish in time is cut; its jobs stay in the store and
                # another replica takes them over when their lease ends.
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, drain)
            if handle_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await receiver.aclose()

    app = Starlette(routes=api.routes, lifespan=lifespan, exception_handlers=api.exception_handlers)
    app.state.receiver = receiver
    web.install(app)
    return app


# One round per lease slot of the figures (outcomes.stats.REFRESH_SLOT_MS).
FIGURES_EVERY_S = 60.0


async def _refresh_figures(receiver: Receiver, stop: anyio.Event) -> None:
    """The 7-day figures of GET /api/v1/stats as gauges, once a minute on every replica:
    one replica a minute computes them (the costly read), every replica publishes that
    one answer from the shared cache, so all export the same numbers. Then the journey
    health gauges, from the open incidents (``receiver/outcomes/health.py``)."""
    while not stop.is_set():
        for what, refresh in (
            ("figures", refresh_metrics),
            ("journey health", refresh_journey_metrics),
        ):
            try:
                await refresh(receiver)
            except Exception:
                # A store outage or one odd incident must not end the loop, nor serving.
                logger.warning("%s: refresh failed; retrying in a minute", what, exc_info=True)
        with anyio.move_on_after(FIGURES_EVERY_S):
            await stop.wait()


def _reload_quietly(receiver: Receiver) -> None:
    try:
        receiver.reload()
    except ConfigError as exc:
        logger.error("SIGHUP reload rejected, running config kept:\n%s", exc)


def _acting(settings: Settings) -> tuple[object, ...]:
    """What decides whether the receiver runs an action by itself."""
    journeys = settings.journeys.journeys
    return (settings.config.automation, [(j.id, j.automation, j.actions) for j in journeys])
