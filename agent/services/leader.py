"""Leader election through a ``coordination.k8s.io/v1`` Lease, and the state the leaders share.

Only the Lease holder collects and sends. It renews the Lease every ``renew`` period; a
follower takes over when the record has not changed for the lease duration *by its own clock*
(as client-go does, so clock skew between nodes does not matter). Every write carries the
``resourceVersion`` it read, so of two candidates only one can win.

The spool may sit on an emptyDir that dies with the pod, so the leader publishes, in the
annotation ``usage.billing/agent-state`` of the same Lease, where a successor must resume:

- ``resume_at``: every window ending at or before it was delivered (the start of the oldest
  waiting report, or the watermark when the spool is empty), with the scrape baselines there;
- ``in_flight``: the report being sent, verbatim, with the baselines after it. It is published
  *before* the first attempt, so a report that may have reached the collector is always either
  before ``resume_at`` or this one.

A successor adopts that state: it drops its own stale spool, re-sends ``in_flight`` unchanged
(same id and content: the collector answers 200 if it already has it) and collects from its
end. Windows the old leader had spooled but never sent are collected again from the source.
Two leaders at once can therefore only send the same windows under the same ids, which the
collector stores once. ``epoch`` tells a leader whether the published state is its own (keep
the local spool) or a successor's (adopt).

Ids depend on where windows are cut, so the known billing-period boundaries travel too, in the
annotation ``usage.billing/billing-boundaries`` (a separate one, which agents that predate it
keep unchanged). Every agent that takes the Lease adds them to its own before collecting.
"""

from __future__ import annotations

import base64
import json
import secrets
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from agent.adapters.boundary_state import decode_boundaries, encode_boundaries
from agent.adapters.kube import LeaseRecord
from agent.adapters.spool import Spool, SpoolEntry
from agent.adapters.state_db import LEASE_EPOCH, SCRAPE_BASELINES, StateDb
from agent.errors import KubeConflict, StateError
from agent.services.boundaries import KnownBoundaries
from agent.services.telemetry import AgentMetrics, Health
from common.clock import Clock
from common.errors import MeteringError
from common.schema import UsageReport

log = structlog.get_logger(__name__)

STATE_ANNOTATION = "usage.billing/agent-state"
BOUNDARIES_ANNOTATION = "usage.billing/billing-boundaries"
# All annotations of an object must stay under 256 KiB; leave room for everyone else's.
MAX_STATE_BYTES = 200 * 1024


class LeaseApi(Protocol):
    async def get_lease(self, namespace: str, name: str) -> LeaseRecord | None: ...

    async def create_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord: ...

    async def replace_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord: ...


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class SharedState:
    """What a successor needs to continue exactly where the leader stopped."""

    epoch: str
    resume_at: str | None = None
    resume_baselines: str | None = None
    in_flight: str | None = None
    in_flight_after: str | None = None

    def encode(self) -> str:
        raw = json.dumps(asdict(self), separators=(",", ":")).encode()
        return base64.b64encode(zlib.compress(raw, 9)).decode()

    @classmethod
    def decode(cls, text: str | None) -> SharedState | None:
        if not text:
            return None
        try:
            raw: Any = json.loads(zlib.decompress(base64.b64decode(text)))
            return cls(**raw)
        except (ValueError, TypeError, zlib.error) as exc:
            log.error("lease_state_unreadable", error=str(exc))
            return None


class LeaderElector:
    """Acquires and renews the Lease, publishes and adopts the shared state."""

    def __init__(
        self,
        *,
        api: LeaseApi,
        namespace: str,
        lease_name: str,
        identity: str,
        clock: Clock,
        lease_duration: timedelta,
        db: StateDb,
        spool: Spool,
        metrics: AgentMetrics,
        health: Health,
        new_epoch: Callable[[], str] = lambda: secrets.token_hex(8),
        boundaries: KnownBoundaries | None = None,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = lease_name
        self.identity = identity
        self._clock = clock
        self._duration = lease_duration
        self._db = db
        self._spool = spool
        self._metrics = metrics
        self._health = health
        self._new_epoch = new_epoch
        self._boundaries = boundaries
        self._record: LeaseRecord | None = None
        self._observed: tuple[object, datetime] | None = None
        self._leader = False
        self._valid_until = datetime.min.replace(tzinfo=UTC)

    @property
    def is_leader(self) -> bool:
        return self._leader and self._clock.now() < self._valid_until

    def _set_leader(self, leader: bool, started: datetime | None = None) -> None:
        if leader != self._leader:
            log.info("leadership_changed", leader=leader, identity=self.identity)
        self._leader = leader
        if started is not None:
            self._valid_until = started + self._duration
        self._metrics.is_leader.set(1 if leader else 0)
        self._health.leader = leader

    def _expired(self, lease: LeaseRecord, now: datetime) -> bool:
        key = (lease.resource_version, lease.holder, lease.renew_time)
        if self._observed is None or self._observed[0] != key:
            self._observed = (key, now)
        duration = timedelta(seconds=lease.duration_seconds or self._duration.total_seconds())
        return not lease.holder or now - self._observed[1] >= duration

    def _state(self, epoch: str, sending: SpoolEntry | None = None) -> str:
        head = sending or self._spool.head()
        if head is not None:
            flying = head if (sending is not None or head.ever_sent) else None
            state = SharedState(
                epoch=epoch,
                resume_at=head.report.window_start.isoformat(),
                resume_baselines=head.state_before,
                in_flight=flying.report.to_json() if flying else None,
                in_flight_after=flying.state_after if flying else None,
            )
        else:
            watermark = self._db.watermark()
            state = SharedState(
                epoch=epoch,
                resume_at=None if watermark is None else watermark.isoformat(),
                resume_baselines=self._db.get(SCRAPE_BASELINES),
            )
        encoded = state.encode()
        if len(encoded) > MAX_STATE_BYTES:
            log.error(
                "lease_state_too_large",
                bytes=len(encoded),
                limit=MAX_STATE_BYTES,
                effect="scrape baselines are not shared; a successor re-primes them",
            )
            state = SharedState(epoch, state.resume_at, None, state.in_flight, None)
            encoded = state.encode()
        return encoded

    def _epoch(self) -> str:
        epoch = self._db.get(LEASE_EPOCH)
        if epoch is None:
            epoch = self._new_epoch()
            self._db.put(LEASE_EPOCH, epoch)
        return epoch

    async def step(self) -> bool:
        """Acquire or renew the Lease once; ``True`` while this agent leads."""
        now = self._clock.now()
        try:
            lease = await self._api.get_lease(self._namespace, self._name)
            if lease is None:
                return await self._create(now)
            self._record = lease
            if lease.holder == self.identity and self._leader:
                return await self._write(lease, now, self._state(self._epoch()), acquired=False)
            if lease.holder != self.identity and not self._expired(lease, now):
                self._set_leader(False)
                return False
            return await self._acquire(lease, now)
        except KubeConflict:
            self._set_leader(False)
            return False
        except MeteringError as exc:
            log.warning("lease_unavailable", error=str(exc), leader=self.is_leader)
            if not self.is_leader:
                self._set_leader(False)
            return self.is_leader

    async def _create(self, now: datetime) -> bool:
        record = LeaseRecord(
            name=self._name,
            holder=self.identity,
            duration_seconds=max(1, int(self._duration.total_seconds())),
            acquire_time=micro_time(now),
            renew_time=micro_time(now),
            annotations=self._annotations({}, self._state(self._epoch())),
        )
        self._record = await self._api.create_lease(self._namespace, record)
        self._set_leader(True, now)
        return True

    def _annotations(self, current: dict[str, str], state: str) -> dict[str, str]:
        """``current`` with this agent's shared state and known boundaries."""
        annotations = {**current, STATE_ANNOTATION: state}
        if self._boundaries is not None:
            known = self._boundaries.moments()
            if known:
                annotations[BOUNDARIES_ANNOTATION] = encode_boundaries(known)
        return annotations

    def _learn_boundaries(self, lease: LeaseRecord) -> None:
        """Add the boundaries a predecessor published to this agent's own."""
        text = lease.annotations.get(BOUNDARIES_ANNOTATION)
        if self._boundaries is None or not text:
            return
        try:
            self._boundaries.add(decode_boundaries(text))
        except StateError as exc:
            log.error("lease_boundaries_unreadable", error=str(exc))

    async def _acquire(self, lease: LeaseRecord, now: datetime) -> bool:
        self._learn_boundaries(lease)
        shared = SharedState.decode(lease.annotations.get(STATE_ANNOTATION))
        adopt = shared is not None and shared.epoch != self._db.get(LEASE_EPOCH)
        epoch = self._new_epoch() if adopt else self._epoch()
        # Win the Lease first; the state is adopted only by the agent that won it.
        published = (
            SharedState(
                epoch,
                shared.resume_at,
                shared.resume_baselines,
                shared.in_flight,
                shared.in_flight_after,
            ).encode()
            if adopt and shared is not None
            else self._state(epoch)
        )
        won = await self._write(lease, now, published, acquired=True)
        if won and adopt and shared is not None:
            self._adopt(shared, epoch)
        return won

    async def _write(
        self, lease: LeaseRecord, now: datetime, state: str, *, acquired: bool
    ) -> bool:
        annotations = self._annotations(lease.annotations, state)
        changed_holder = lease.holder != self.identity
        record = LeaseRecord(
            name=self._name,
            holder=self.identity,
            duration_seconds=max(1, int(self._duration.total_seconds())),
            acquire_time=micro_time(now) if acquired else lease.acquire_time,
            renew_time=micro_time(now),
            transitions=lease.transitions + (1 if changed_holder and lease.holder else 0),
            annotations=annotations,
            resource_version=lease.resource_version,
        )
        self._record = await self._api.replace_lease(self._namespace, record)
        self._set_leader(True, now)
        return True

    def _adopt(self, shared: SharedState, epoch: str) -> None:
        """Continue from a predecessor's published state instead of this pod's own spool."""
        now = self._clock.now()
        try:
            with self._db.transaction():
                dropped = self._spool.clear()
                if shared.in_flight is not None:
                    report = UsageReport.model_validate_json(shared.in_flight)
                    self._spool.add(
                        report,
                        now=now,
                        state_before=shared.resume_baselines,
                        state_after=shared.in_flight_after,
                        attempts=1,
                    )
                    self._db.set_watermark(report.window_end)
                    self._db.put(SCRAPE_BASELINES, shared.in_flight_after)
                elif shared.resume_at is not None:
                    self._db.set_watermark(datetime.fromisoformat(shared.resume_at))
                    self._db.put(SCRAPE_BASELINES, shared.resume_baselines)
                self._db.put(LEASE_EPOCH, epoch)
        except (StateError, ValueError) as exc:
            log.error("lease_state_not_adopted", error=str(exc))
            return
        log.info(
            "lease_state_adopted",
            resume_at=shared.resume_at,
            in_flight=shared.in_flight is not None,
            dropped_local_reports=dropped,
        )

    async def publish_in_flight(self, entry: SpoolEntry) -> bool:
        """Before a report's send: renew the Lease naming it in flight; ``False``: do not send."""
        if not self.is_leader or self._record is None:
            return False
        now = self._clock.now()
        try:
            return await self._write(
                self._record, now, self._state(self._epoch(), entry), acquired=False
            )
        except KubeConflict:
            self._set_leader(False)
            return False
        except MeteringError as exc:
            log.warning("lease_unavailable", error=str(exc))
            return False

    async def release(self) -> None:
        """On shutdown, let a follower take over at once; the shared state stays."""
        if not self.is_leader or self._record is None:
            return
        lease = self._record
        try:
            await self._api.replace_lease(
                self._namespace,
                LeaseRecord(
                    name=self._name,
                    holder=None,
                    duration_seconds=lease.duration_seconds,
                    acquire_time=lease.acquire_time,
                    renew_time=micro_time(self._clock.now()),
                    transitions=lease.transitions,
                    annotations=self._annotations(lease.annotations, self._state(self._epoch())),
                    resource_version=lease.resource_version,
                ),
            )
        except MeteringError as exc:
            log.warning("lease_release_failed", error=str(exc))
        self._set_leader(False)
