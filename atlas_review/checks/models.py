"""Checks beyond Atlas: which deterministic check applies to which field (administrators
edit it), the result per field, who revealed a masked value, and where each identifier
(IMEI, invoice, Aadhaar, PAN) has been seen, for reuse alerts across applications.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from atlas_review.flows.models import ExtractedField, Flow

from .validators import CHECK_CHOICES, CHECKS


class FieldCheckQuerySet(models.QuerySet):
    def active(self):
        return self.filter(active=True)


class FieldCheck(models.Model):
    """Check `check_code` runs on every value of `document_type`.`field_name`."""

    document_type = models.CharField(max_length=64)
    field_name = models.CharField(max_length=128)
    check_code = models.CharField("check", max_length=32, choices=CHECK_CHOICES)
    active = models.BooleanField(default=True)

    objects = FieldCheckQuerySet.as_manager()

    class Meta:
        ordering = ["document_type", "field_name", "check_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["document_type", "field_name", "check_code"], name="fieldcheck_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_type}.{self.field_name}: {self.get_check_code_display()}"


class FieldCheckResult(models.Model):
    """The outcome of one check on one field's current value (recomputed at every ingest
    that changes the flow). "Not applicable" (an empty value) has no row."""

    # No index of its own: fieldcheckresult_uniq (field, check_code) serves look-ups by field
    # (and one index less to write at every ingest).
    field = models.ForeignKey(
        ExtractedField, on_delete=models.CASCADE, related_name="check_results", db_index=False
    )
    check_code = models.CharField("check", max_length=32, choices=CHECK_CHOICES)
    passed = models.BooleanField()
    reason = models.CharField(max_length=300, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["field_id", "check_code"]
        constraints = [
            models.UniqueConstraint(fields=["field", "check_code"], name="fieldcheckresult_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {'passed' if self.passed else self.reason}"

    @property
    def label(self) -> str:
        check = CHECKS.get(self.check_code)
        return check.label if check else self.check_code


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Reveal events are append-only.")

    def delete(self):
        raise TypeError("Reveal events are append-only.")


class RevealEvent(models.Model):
    """A reviewer pressed "reveal" on a masked value: who, when, which field and the value
    they saw. Append-only: the model and its queryset refuse updates and deletes."""

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # As it read at the time (users can be renamed).
    actor_username = models.CharField(max_length=150)
    field = models.ForeignKey(ExtractedField, on_delete=models.PROTECT, related_name="+")
    flow = models.ForeignKey(
        Flow, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    document_type = models.CharField(max_length=64, blank=True)
    field_name = models.CharField(max_length=128)
    # What was shown: Atlas may change the field's value later.
    value = models.JSONField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # The audit trail of one application.
            models.Index(fields=["flow", "at"], name="revealevent_flow_idx"),
            # "What did this reviewer reveal?"
            models.Index(fields=["actor", "at"], name="revealevent_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username} revealed {self.subject}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Reveal events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Reveal events are append-only.")

    @property
    def subject(self) -> str:
        return f"{self.document_type}.{self.field_name}"


class IdentifierKind(models.TextChoices):
    IMEI = "imei", "IMEI"
    INVOICE = "invoice", "Invoice number + dealer GSTIN"
    AADHAAR = "aadhaar", "Aadhaar"
    PAN = "pan", "PAN"


class IdentifierSighting(models.Model):
    """One identifier read in one field of one flow. The same identifier in another
    flow is a reuse alert (reuse.find_reuse)."""

    kind = models.CharField(max_length=16, choices=IdentifierKind)
    # Normalised: digits only for IMEI/Aadhaar, upper case for PAN, "GSTIN/INVOICE_NO".
    value = models.CharField(max_length=200)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="+")
    # No index of its own: identifiersighting_uniq (field, kind, value) serves look-ups by
    # field (and one index less to write at every ingest).
    field = models.ForeignKey(
        ExtractedField, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["field", "kind", "value"], name="identifiersighting_uniq"
            ),
        ]
        indexes = [
            # find_reuse: "other sightings of this (kind, value)".
            models.Index(fields=["kind", "value"], name="sighting_kind_value_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value} in flow {self.flow_id}"
