"""What administrators set for the supervisor overview: how long an item may wait in each
queue (the SLA). The overview's own permission lives here too."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from atlas_review.review.models import Queue


class QueueSla(models.Model):
    """Open items older than `hours` count as past the SLA on the overview. A queue without
    a row uses settings.REVIEW_SLA_HOURS."""

    queue = models.CharField(max_length=16, choices=Queue, unique=True)
    hours = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(24 * 90)],
        help_text="Items waiting longer than this are past the SLA.",
    )

    class Meta:
        verbose_name = "queue SLA"
        verbose_name_plural = "queue SLAs"
        ordering = ["queue"]
        permissions = [("view_overview", "Can see the supervisor overview")]

    def __str__(self) -> str:
        return f"{self.get_queue_display()}: {self.hours} h"

    @classmethod
    def hours_by_queue(cls) -> dict[str, int]:
        """Every queue's SLA in hours, the default filled in (one query)."""
        hours = dict.fromkeys(Queue.values, settings.REVIEW_SLA_HOURS)
        hours.update(cls.objects.values_list("queue", "hours"))
        return hours
