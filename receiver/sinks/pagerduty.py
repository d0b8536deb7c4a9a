"""PagerDuty sink: the Events API v2 through the ``pagerduty`` package (7.x, on httpx2).

One PagerDuty alert per incident, ``dedup_key`` = incident id. Open, update and reopen are
trigger events: PagerDuty logs a trigger on the open alert and updates it, and after a
resolve the same dedup key opens a new PagerDuty incident, which is what a reopen should
do. Resolve is a resolve event; acknowledge (a person pressed it in Slack) an acknowledge.

A person who resolved the PagerDuty incident (``resolved_by_person`` on the receipt, from
``/inbound/pagerduty``) is taken at their word: updates, acknowledgements and the resolve
are not sent, since a trigger would open a second PagerDuty incident for the same outage.
Only a reopen (the alerts fired again after the incident resolved here) triggers again.

PagerDuty deduplicates per routing key, so an incident's alert lives in the service whose
key triggered it. The receipt names that key by a fingerprint (``routing_key_id``), and the
key itself is kept in the store's cache (never shown) for four times ``store.retention``
from the last event sent with it. When a reload gives the journey another key, the
episode's updates, acknowledgement and resolve still go to the alert where it is; the next
episode (an open or a reopen: a new PagerDuty incident anyway) goes to the key of now.
Replicas reloaded at different moments so never move an alert to and fro. A key no
longer known anywhere (the cache lost) leaves the old alert to be resolved by hand, and
says so in the log.

The client blocks, so each call runs on a worker thread, and its own retrying is switched
off: retry policy is the outbox's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeVar, cast

import httpx2
import pagerduty

from receiver.config import PagerDutySinkConfig
from receiver.errors import (
    DeliveryError,
    DeliveryReason,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from receiver.incident import Incident, kpi_line
from receiver.logtext import clip, printable, redact
from receiver.sinks import Delivery, Receipt, Shared
from receiver.sinks._http import error_for_status, incident_url, off_loop, retry_after
from receiver.store.cache import LocalCache
from receiver.store.records import IncidentState, KpiRecord
from receiver.tls import ssl_context

SUMMARY_MAX = 1024
"""PagerDuty's limit on ``payload.summary``, in characters."""
EVENT_MAX_BYTES = 512_000
"""PagerDuty's 512 KB limit on an event, read as Alertmanager reads it (the smaller way)."""
CLIENT = "journey-receiver"
PERSON_RESOLVED = "resolved_by_person"
"""Receipt key: who resolved the PagerDuty incident by hand ("" or absent: nobody)."""
_RETRIGGER = frozenset({"open", "reopen"})
logger = logging.getLogger("journey_receiver.sinks.pagerduty")
T = TypeVar("T")
KEY_ID = "routing_key_id"
"""Receipt key: the fingerprint of the routing key the incident's alert was triggered with."""
_KEYS_CACHED = "pagerduty-routing-key"
# Incident id -> "<job id> <key fingerprint>": the key a trigger of a new episode was last
# sent with, written before it is sent, so that a retry of that job after an attempt that
# got no answer reaches the alert the attempt may have made, whatever the key is now.
_TRIED = "pagerduty-trigger-key"
_KEPT_RETENTIONS = 4


def resolved_by_person(state: IncidentState) -> str:
    """Who resolved the incident's PagerDuty incident by hand since it was last triggered
    ("" when nobody did)."""
    return state.sinks.get("pagerduty", {}).get(PERSON_RESOLVED, "")


# What gives way, in this order, when an event is too large: the incident URL has it all.
_SHRINK_ORDER = (
    "alerts",
    "score_breakdown",
    "probable_causes",
    "kpis",
    "runbooks",
    "stages",
    "regions",
    "services",
    "summary",
)


class PagerDutySink:
    """Sends incidents to PagerDuty; ``external_url`` (the receiver's own) makes the link
    to the incident."""

    name = "pagerduty"
    coalesces_updates = True

    def __init__(
        self, config: PagerDutySinkConfig, external_url: str | None, shared: Shared | None = None
    ) -> None:
        self.config = config
        self.external_url = external_url
        shared = shared or Shared()
        self._cache = shared.cache or LocalCache()
        # Renewed at each event sent with it; an incident lives on as long as its alerts
        # keep coming (a retention from the last), maybe with nothing sent meanwhile.
        self._keep_ms = _KEPT_RETENTIONS * shared.retention_ms
        self._tls = ssl_context(config.ca_file)
        self._severity: dict[str, str] = {p: s for p, s in config.severity.items()}
        # One client per routing key (the key is bound to the client), built on first use
        # and reused: journeys may bring their own keys.
        self._clients: dict[str, pagerduty.EventsApiV2Client] = {}

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        if previous and previous.refs.get(PERSON_RESOLVED) and delivery.kind not in _RETRIGGER:
            # Nothing sent, nothing learnt: the receipt must not write back refs an inbound
            # webhook may have changed meanwhile (a person reopening it there).
            return Receipt(sink=self.name, state=previous.state, refs={"dedup_key": incident.id})
        configured = self._routing_key(incident, delivery)
        # The episode's alert is where it was triggered; a new episode goes to the key of
        # now (PagerDuty opens a new incident for it anyway), unless an earlier attempt of
        # this very job may have triggered it unheard: then where that attempt sent it (a
        # reload or a replica of a rolling change may have another key by now).
        if delivery.kind in _RETRIGGER:
            # Whatever the last attempt's error: a first attempt that went unheard keeps
            # its doubt through a later refusal (a 429), and the record is this job's only.
            held = await self._tried_key(incident, delivery, configured)
        else:
            before = previous.refs.get(KEY_ID) if previous else None
            held = await self._known_key(incident, before, configured)
        routing_key = held or configured
        event: dict[str, Any] = {}
        if delivery.kind == "resolve":
            action, state = "resolve", "resolved"
        elif delivery.kind == "acknowledge":
            action, state = "acknowledge", "acknowledged"
        else:
            action, state, event = "trigger", "triggered", self._trigger(incident, routing_key)
        key_id = fingerprint(routing_key)
        # Kept (renewed) before it is used: a follow-up after a reload must find it.
        await self._cache.set(_KEYS_CACHED, key_id, routing_key, self._keep_ms)
        if delivery.kind in _RETRIGGER:
            tried = f"{delivery.job_id} {key_id}"
            await self._cache.set(_TRIED, incident.id, tried, self._keep_ms)
        try:
            await off_loop(
                self._client(routing_key).send_event, action, dedup_key=incident.id, **event
            )
        except pagerduty.Error as exc:
            raise self._error(incident.id, [routing_key, configured], exc) from exc
        refs = {"dedup_key": incident.id, KEY_ID: key_id}
        if action == "trigger" and previous and previous.refs.get(PERSON_RESOLVED):
            refs[PERSON_RESOLVED] = ""  # a new PagerDuty incident, which nobody resolved yet
        return Receipt(sink=self.name, state=state, refs=refs)

    async def _tried_key(
        self, incident: Incident, delivery: Delivery, configured: str
    ) -> str | None:
        """The routing key an earlier attempt of this job sent its trigger with (None when
        none is recorded for it)."""
        tried = await self._cache.get(_TRIED, incident.id)
        job_id, _, before = (tried or "").partition(" ")
        if job_id != delivery.job_id:
            return None
        return await self._known_key(incident, before, configured)

    async def _known_key(
        self, incident: Incident, before: str | None, configured: str
    ) -> str | None:
        """The routing key whose fingerprint is ``before``, the one the episode's alert was
        triggered with (None when the receipt does not say, or it is no longer known)."""
        if not before:
            return None
        default = self.config.routing_key
        for known in (configured, default.get_secret_value() if default else None):
            if known is not None and fingerprint(known) == before:
                return known
        held = await self._cache.get(_KEYS_CACHED, before)
        if held is None or fingerprint(held) != before:
            logger.warning(
                "incident %s: its PagerDuty alert was triggered with a routing key no longer "
                "known (fingerprint %s); it is sent with the journey's key now, and the old "
                "alert must be resolved in PagerDuty by hand",
                incident.id,
                before,
            )
            return None
        return held

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await off_loop(client.close)

    def _routing_key(self, incident: Incident, delivery: Delivery) -> str:
        key = delivery.owner.pagerduty_routing_key or self.config.routing_key
        if key is None:
            raise PermanentDeliveryError(
                self.name,
                incident.id,
                "auth",
                f"no PagerDuty routing key for journey {incident.journey!r}: set "
                "sinks.pagerduty.routing_key in receiver.yaml, or the journey's "
                "owner.pagerduty_routing_key in journeys.yaml",
            )
        return key.get_secret_value()

    def _client(self, routing_key: str) -> pagerduty.EventsApiV2Client:
        client = self._clients.get(routing_key)
        if client is None:
            client = pagerduty.EventsApiV2Client(
                routing_key, base_url=self.config.base_url(), verify=self._tls
            )
            # The package annotates timeout by its int default; httpx2 takes seconds as float.
            client.timeout = self.config.timeout  # type: ignore[assignment]
            # ApiClient.request retries by itself (429 forever, 5xx, network errors), with
            # time.sleep. It stops retrying a status listed in ``retry`` once the attempts
            # so far exceed ``max_http_attempts``, so -1 answers at the first response; 429
            # must be listed, or it takes the retry-forever path. Network errors are
            # retried until the attempts exceed ``max_network_attempts``: 0 raises at once.
            client.retry = {429: 1}
            client.max_http_attempts = -1
            client.max_network_attempts = 0
            self._clients[routing_key] = client
        return client

    def _trigger(self, incident: Incident, routing_key: str) -> dict[str, Any]:
        """The trigger event's properties besides action and dedup key, within PagerDuty's
        size limit: custom details give way (see _SHRINK_ORDER) before the event fails."""
        url = incident_url(self.external_url, incident.id)
        details = _shown(_details(incident, url))
        payload: dict[str, Any] = {
            "summary": clip(incident.title, SUMMARY_MAX),
            "source": self.config.source,
            # An unmapped priority pages loudly rather than quietly.
            "severity": self._severity.get(incident.priority, "critical"),
            "group": incident.journey,
            "custom_details": details,
        }
        if incident.updated_at:
            payload["timestamp"] = incident.updated_at
        component = _component(incident)
        if component:
            payload["component"] = clip(component, SUMMARY_MAX)
        event: dict[str, Any] = {
            "payload": payload,
            "links": _shown(_links(incident, url)),
            "client": CLIENT,
        }
        if url:
            event["client_url"] = url
        omitted: list[str] = []
        for key in _SHRINK_ORDER:
            if _size(event, routing_key, incident.id) <= EVENT_MAX_BYTES:
                break
            del details[key]
            omitted.append(key)
            details["omitted"] = f"{', '.join(omitted)} (too large for PagerDuty)"
        return event

    def _error(self, incident_id: str, secrets: list[str], exc: pagerduty.Error) -> DeliveryError:
        response = exc.response
        if response is not None:
            return error_for_status(
                self.name,
                incident_id,
                response.status_code,
                redact(response.text, secrets),
                retry_after(response.headers.get("retry-after"), time.time()),
            )
        # No answer: the client raised on the first network error, which is its cause.
        cause = exc.__cause__
        detail = clip(redact(f"{type(cause).__name__}: {cause}", secrets))
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(cause)):
            # A trust problem is configuration: another attempt fails the same way.
            return PermanentDeliveryError(
                self.name,
                incident_id,
                "client",
                f"{detail}; if {self.config.events_url} uses a private CA, set "
                "sinks.pagerduty.ca_file to its bundle",
            )
        reason: DeliveryReason = (
            "timeout" if isinstance(cause, httpx2.TimeoutException) else "server"
        )
        # No answer: the event may have landed all the same (a trigger's retry must then
        # go where it went, see ``_tried_key``).
        return RetryableDeliveryError(self.name, incident_id, reason, detail, ambiguous=True)


def fingerprint(routing_key: str) -> str:
    """A routing key's name in receipts and the cache: says which key, gives none of it."""
    return hashlib.sha256(routing_key.encode()).hexdigest()[:16]


def _details(incident: Incident, url: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "summary": incident.summary,
        "priority": incident.priority,
        "score": incident.score,
        "score_breakdown": incident.score_breakdown,
        "kpis": [_kpi_text(KpiRecord.model_validate(k)) for k in incident.kpis],
        "probable_causes": incident.probable_causes,
        "stages": incident.stages,
        "services": incident.services,
        "regions": incident.regions,
        "alert_count": incident.alert_count,
        "firing_count": incident.firing_count,
        "runbooks": [f"{rb['title']}: {rb['url']}" for rb in incident.runbooks],
        "alerts": incident.alerts,
    }
    if url:
        details["incident_url"] = url
    return details


def _shown(value: T) -> T:
    """``value`` (custom details: the incident's alerts, labels and annotations as they
    came) with every string, keys too, fit to send (``logtext.printable``): a NUL or an
    ESC shown as its escape, the lines of a description kept."""
    if isinstance(value, str):
        return cast(T, printable(value, lines=True))
    if isinstance(value, list):
        return cast(T, [_shown(item) for item in value])
    if isinstance(value, dict):
        return cast(T, {_shown(key): _shown(item) for key, item in value.items()})
    return value


def _component(incident: Incident) -> str | None:
    """The service the title leads with: the one with the most firing alerts (by name
    among equals), not the first by name, which may have stopped firing."""
    firing = Counter(
        str(a["service"])
        for a in incident.alerts
        if a.get("status") == "firing" and a.get("service")
    )
    if firing:
        return min(firing, key=lambda s: (-firing[s], s))
    return incident.services[0] if incident.services else None


def _kpi_text(kpi: KpiRecord) -> str:
    return kpi_line(kpi) or f"{kpi.name}: no comparison with its baseline"


def _links(incident: Incident, url: str | None) -> list[dict[str, str]]:
    links = [{"href": url, "text": f"Incident {incident.id}"}] if url else []
    # PagerDuty wants web URLs; a runbook kept elsewhere is still listed in custom_details.
    links.extend(
        {"href": rb["url"], "text": rb["title"]}
        for rb in incident.runbooks
        if rb["url"].startswith(("https://", "http://"))
    )
    return links


def _size(event: dict[str, Any], routing_key: str, dedup_key: str) -> int:
    # ASCII escapes and spaced separators: never smaller than the compact UTF-8 httpx2 sends.
    body = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key}
    return len(json.dumps({**body, **event}).encode())


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()  # ``raise ... from`` can close a loop
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
