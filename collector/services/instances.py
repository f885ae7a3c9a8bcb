"""Instances of a customer: retiring one stops billing its last device count."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from collector.adapters.db.corrections import CorrectionStore
from collector.errors import NotFound
from common.clock import Clock

log = structlog.get_logger("collector.instances")


@dataclass(frozen=True)
class Retirement:
    customer_id: str
    instance_id: str
    metrics: list[str]


class InstanceService:
    def __init__(self, corrections: CorrectionStore, clock: Clock) -> None:
        self._corrections = corrections
        self._clock = clock

    async def retire(
        self, customer_id: str, instance_id: str, actor: str = "operator"
    ) -> Retirement:
        """Zero the instance's newest ``set`` values from now on; peaks and messages stay billed.

        Raises NotFound when the instance never reported a ``set`` metric, or is retired already.
        """
        metrics = await self._corrections.retire(customer_id, instance_id, actor, self._clock.now())
        if not metrics:
            raise NotFound(
                f"instance {instance_id!r} of customer {customer_id!r} has no device count "
                "being billed (never reported, or already retired)",
                field="instance_id",
            )
        log.info("instance retired", customer_id=customer_id, instance_id=instance_id, by=actor)
        return Retirement(customer_id, instance_id, metrics)
