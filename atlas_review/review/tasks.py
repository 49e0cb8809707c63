"""Celery tasks of the review app: thin wrappers around flagging, ids as arguments."""

from __future__ import annotations

import logging

from celery import shared_task

from atlas_review.flows.models import Flow

from . import flagging
from .models import FlowReview

log = logging.getLogger(__name__)

CHUNK = 500
GROUP = 100


@shared_task
def reflag_flow(flow_id: int) -> None:
    flow = Flow.objects.filter(pk=flow_id).first()
    if flow is not None:
        flagging.flag_flow(flow)


@shared_task(bind=True)
def reflag_open_flows(self, after_id: int = 0) -> int:
    """Re-evaluate every flow whose review is not closed (after a threshold or mandatory
    field change), CHUNK flows per task run; each run queues the next chunk, so a million
    flows never sit in one task. Returns how many flows this run evaluated."""
    config = flagging.Config.load()
    done = 0
    while True:
        ids = list(
            FlowReview.objects.filter(closed_at=None, flow_id__gt=after_id)
            .order_by("flow_id")
            .values_list("flow_id", flat=True)[:CHUNK]
        )
        # flag_flows reads each table once per group; groups keep the review rows it locks
        # (claims and decisions wait on them) to a short transaction.
        for start in range(0, len(ids), GROUP):
            flagging.flag_flows(
                Flow.objects.filter(pk__in=ids[start : start + GROUP]), config=config
            )
        done += len(ids)
        if len(ids) < CHUNK:
            break
        after_id = ids[-1]
        if not self.app.conf.task_always_eager:
            # With a broker, the next chunk is its own task; inline (quick start) we loop
            # here rather than recurse.
            reflag_open_flows.delay(after_id)
            break
    log.info("re-flagged %s flows", done)
    return done
