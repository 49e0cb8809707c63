"""The record of every export: who took which data away, when, with which filters, and how
many rows. A background export's state (queued, running, progress, file) lives on the same
row, so its page never asks Celery."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class ExportJob(models.Model):
    class Kind(models.TextChoices):
        DECISIONS = "decisions", "Decisions (the trail)"
        FLOWS = "flows", "Flows"

    class Via(models.TextChoices):
        WEB = "web", "Web download"
        BACKGROUND = "background", "Background job"
        COMMAND = "command", "Management command"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+", help_text="Empty for exports made with a management command.",
    )  # fmt: skip
    # The username, or "command (<os user>)": kept as it read at the time.
    requested_by = models.CharField(max_length=200, blank=True)
    via = models.CharField(max_length=16, choices=Via)
    kind = models.CharField(max_length=16, choices=Kind)
    filters = models.JSONField(default=dict, blank=True)
    bom = models.BooleanField(default=False)
    masked = models.BooleanField(default=True, help_text="Identity numbers were masked.")

    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    rows_expected = models.PositiveBigIntegerField(null=True, blank=True)
    rows_written = models.PositiveBigIntegerField(default=0)
    # Background jobs only: relative to MEDIA_ROOT.
    file = models.CharField(max_length=300, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("export_data", "Can export decisions and flows as CSV"),
            ("view_all_exports", "Can see and download everyone's exports"),
        ]
        indexes = [
            # The exports page: "my latest exports".
            models.Index(fields=["user", "-created_at"], name="exportjob_user_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"Export #{self.pk} {self.kind} by {self.requested_by or '?'} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("audit:job", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def progress(self) -> int:
        """Percent done, for the progress bar."""
        if self.status == self.Status.DONE:
            return 100
        if not self.rows_expected:
            return 0
        return min(99, self.rows_written * 100 // self.rows_expected)

    @property
    def path(self) -> Path | None:
        return Path(settings.MEDIA_ROOT) / self.file if self.file else None

    @property
    def download_name(self) -> str:
        f = self.filters
        span = "-".join(x for x in (f.get("date_from", ""), f.get("date_to", "")) if x)
        return f"atlas-{self.kind}{'-' + span if span else ''}-export-{self.pk}.csv"
