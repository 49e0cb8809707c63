"""Mirror of what Atlas knows: flows (v3 applications), uploads/batches, documents,
extracted fields and cross-checks, plus the journal of every raw payload received.

Atlas's values are never overwritten by reviewers: decisions live in the review app and
point here. A re-delivery updates these rows in place (ids stay stable, so decisions keep
pointing at the same item) and marks rows absent from the new payload as withdrawn.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class SyncState(models.TextChoices):
    NEW = "NEW", "Not started"
    STARTING = "STARTING", "Starting"  # created here, flow/init or upload not yet done
    POLLING = "POLLING", "Processing at Atlas"
    DONE = "DONE", "Results received"
    FAILED = "FAILED", "Failed at Atlas"
    GAVE_UP = "GAVE_UP", "Gave up waiting"
    ERROR = "ERROR", "Sync error"


ACTIVE_SYNC_STATES = (SyncState.NEW, SyncState.STARTING, SyncState.POLLING)


class FlowQuerySet(models.QuerySet):
    def unfinished(self):
        return self.filter(sync_state__in=ACTIVE_SYNC_STATES)

    def due(self, now=None):
        # uses flow_due_idx
        return self.unfinished().filter(next_sync_at__lte=now or timezone.now())

    def sync_failed(self):
        return self.filter(sync_state__in=(SyncState.FAILED, SyncState.GAVE_UP, SyncState.ERROR))

    def with_counts(self, confidence_threshold: float, similarity_threshold: float):
        """Annotate document/low-confidence/low-similarity counts with subqueries, so a
        list page costs one query however many flows it shows."""
        from django.db.models import Count, IntegerField, OuterRef, Subquery
        from django.db.models.functions import Coalesce

        def count_of(qs):
            return Coalesce(
                Subquery(
                    qs.filter(flow=OuterRef("pk"))
                    .order_by()
                    .values("flow")
                    .annotate(n=Count("pk"))
                    .values("n"),
                    output_field=IntegerField(),
                ),
                0,
            )

        return self.annotate(
            document_count=count_of(Document.objects.current()),
            error_document_count=count_of(Document.objects.current().with_errors()),
            low_confidence_count=count_of(
                ExtractedField.objects.current().below_confidence(confidence_threshold)
            ),
            low_similarity_count=count_of(
                CrossCheck.objects.current().below_similarity(similarity_threshold)
            ),
        )


class Flow(models.Model):
    """One loan application at Atlas (v3 flow)."""

    flow_uuid = models.CharField(max_length=64, unique=True, null=True, blank=True)
    application_id = models.CharField(max_length=128, db_index=True)
    product_type = models.CharField(max_length=64)
    flow_params = models.JSONField(default=dict, blank=True)
    # What we asked Atlas to process: [{"file_url": ..., "document_id": ...}, ...]
    requested_files = models.JSONField(default=list, blank=True)

    # Atlas's four statuses, stored as Atlas says them (unknown values are kept and shown).
    upload_status = models.CharField(max_length=32, blank=True)
    processing_status = models.CharField(max_length=32, blank=True)
    crosscheck_status = models.CharField(max_length=32, blank=True)
    master_status = models.CharField(max_length=32, blank=True)

    # Our side of the sync.
    sync_state = models.CharField(max_length=16, choices=SyncState, default=SyncState.NEW)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    error_count = models.PositiveIntegerField(default=0)

    # The last payload applied: its hash makes re-delivery a no-op; its time orders deliveries.
    results_hash = models.CharField(max_length=64, blank=True)
    results_as_of = models.DateTimeField(null=True, blank=True)
    results_source = models.CharField(max_length=16, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FlowQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The beat sweep: "unfinished flows whose next sync is due".
            models.Index(
                fields=["next_sync_at"],
                name="flow_due_idx",
                condition=Q(sync_state__in=["NEW", "STARTING", "POLLING"]),
            ),
            models.Index(fields=["-created_at", "-id"], name="flow_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.application_id} ({self.flow_uuid or 'not started'})"

    def get_absolute_url(self) -> str:
        return reverse("flows:detail", args=[self.pk])

    @property
    def is_processing(self) -> bool:
        return self.sync_state in ACTIVE_SYNC_STATES

    def gave_up_deadline(self, give_up_seconds: int):
        start = self.processing_started_at or self.created_at
        return start + timedelta(seconds=give_up_seconds)


class Upload(models.Model):
    """One multiupload: a batch of files. v3 uploads belong to a flow; v1 batches stand alone."""

    class Api(models.TextChoices):
        V1 = "v1", "v1 docstream"
        V3 = "v3", "v3 flow"

    batch_id = models.CharField(max_length=128, unique=True)
    api = models.CharField(max_length=2, choices=Api)
    flow = models.ForeignKey(
        Flow, null=True, blank=True, on_delete=models.CASCADE, related_name="uploads"
    )
    product_type = models.CharField(max_length=64, blank=True)
    files = models.JSONField(default=list, blank=True)

    # v1 batches are polled on their own (there is no status endpoint; extracts tell).
    sync_state = models.CharField(max_length=16, choices=SyncState, default=SyncState.POLLING)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    error_count = models.PositiveIntegerField(default=0)
    results_hash = models.CharField(max_length=64, blank=True)
    results_as_of = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_sync_at"],
                name="upload_due_idx",
                condition=Q(api="v1", sync_state__in=["NEW", "STARTING", "POLLING"]),
            ),
        ]

    def __str__(self) -> str:
        return self.batch_id

    def file_url_for(self, document_id: str) -> str:
        for item in self.files:
            if item.get("document_id") == document_id:
                return item.get("file_url", "")
        return ""


class CurrentQuerySet(models.QuerySet):
    def current(self):
        """Rows in Atlas's latest delivery (withdrawn rows are kept for the audit trail)."""
        return self.filter(withdrawn_at__isnull=True)


class DocumentQuerySet(CurrentQuerySet):
    def with_errors(self):
        return self.exclude(error_code="")


class Document(models.Model):
    """One ocr_data item. Identified by file_uuid when Atlas sends it, else by position;
    document_id is the lender's reference and is not unique."""

    flow = models.ForeignKey(
        Flow, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    v1_batch = models.ForeignKey(
        Upload, null=True, blank=True, on_delete=models.CASCADE, related_name="documents",
        help_text="Set for v1 docstream documents, which have no flow.",
    )  # fmt: skip
    key = models.CharField(max_length=160)
    position = models.PositiveIntegerField()
    document_id = models.CharField(max_length=160, blank=True)
    file_uuid = models.CharField(max_length=160, blank=True)
    batch_id = models.CharField(max_length=128, blank=True)
    file_url = models.TextField(blank=True)
    document_type = models.CharField(max_length=64, blank=True, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_reason = models.TextField(blank=True)
    extra = models.JSONField(default=dict, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["flow", "key"],
                name="document_flow_key_uniq",
                condition=Q(flow__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["v1_batch", "key"],
                name="document_batch_key_uniq",
                condition=Q(v1_batch__isnull=False),
            ),
            models.CheckConstraint(
                condition=Q(flow__isnull=False) | Q(v1_batch__isnull=False),
                name="document_has_owner",
            ),
        ]
        indexes = [
            # Exceptions queue: "documents Atlas could not read".
            models.Index(
                fields=["created_at"], name="document_error_idx", condition=~Q(error_code="")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_type or 'unknown'} #{self.position}"

    @property
    def label(self) -> str:
        return (
            self.document_type.replace("_", " ").title()
            if self.document_type
            else "Unrecognised document"
        )

    @property
    def has_error(self) -> bool:
        return bool(self.error_code)


class ExtractedFieldQuerySet(CurrentQuerySet):
    def below_confidence(self, threshold: float):
        # uses field_low_confidence_idx for the default threshold
        return self.filter(confidence__lt=threshold)


class ExtractedField(models.Model):
    # FK indexes of their own would be duplicates, written at every ingest for nothing:
    # field_document_name_uniq (document, name) and field_flow_conf_idx (flow, confidence)
    # serve the look-ups by document and by flow.
    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="fields", db_index=False
    )
    # Denormalised so queue queries need no join: they filter by flow, type and name.
    flow = models.ForeignKey(
        Flow, null=True, blank=True, on_delete=models.CASCADE, related_name="fields",
        db_index=False,
    )  # fmt: skip
    document_type = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=128)
    position = models.PositiveIntegerField(default=0)
    value = models.JSONField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ExtractedFieldQuerySet.as_manager()

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "name"], name="field_document_name_uniq"),
        ]
        indexes = [
            # Threshold look-ups "fields below confidence X" for a type/field override.
            models.Index(
                fields=["document_type", "name", "confidence"], name="field_type_name_conf_idx"
            ),
            # Flow lists count low-confidence fields per flow.
            models.Index(fields=["flow", "confidence"], name="field_flow_conf_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.document_type}.{self.name}"

    @property
    def display_value(self) -> str:
        return display(self.value)


class CrossCheckQuerySet(CurrentQuerySet):
    def below_similarity(self, threshold: float):
        return self.filter(similarity__lt=threshold)


class CrossCheck(models.Model):
    # No FK index of its own: crosscheck_flow_key_uniq (flow, key) serves look-ups by flow.
    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, related_name="cross_checks", db_index=False
    )
    key = models.CharField(max_length=400)
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=128, blank=True)
    source_doc = models.CharField(max_length=64, blank=True)
    source_field_name = models.CharField(max_length=128, blank=True)
    source_value = models.JSONField(null=True, blank=True)
    target_doc = models.CharField(max_length=64, blank=True)
    target_field_name = models.CharField(max_length=128, blank=True)
    target_value = models.JSONField(null=True, blank=True)
    similarity = models.FloatField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CrossCheckQuerySet.as_manager()

    class Meta:
        ordering = ["flow_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "key"], name="crosscheck_flow_key_uniq")
        ]
        indexes = [
            models.Index(fields=["name", "similarity"], name="crosscheck_name_sim_idx"),
            models.Index(fields=["flow", "similarity"], name="crosscheck_flow_sim_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.key

    @property
    def display_source(self) -> str:
        return display(self.source_value)

    @property
    def display_target(self) -> str:
        return display(self.target_value)


def display(value) -> str:
    """How a JSON value reads to a person: lists joined, empty shown as empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(display(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


class Payload(models.Model):
    """The journal: every raw body Atlas gave us (poll responses and callback deliveries),
    stored before it is applied. The journal, not the broker, is the source of truth."""

    class Source(models.TextChoices):
        POLL_V3 = "poll_v3", "Poll (v3 extracts)"
        POLL_V1 = "poll_v1", "Poll (v1 extracts)"
        CALLBACK_V3 = "callback_v3", "Callback (v3)"
        CALLBACK_V1 = "callback_v1", "Callback (v1)"

    class Outcome(models.TextChoices):
        RECEIVED = "received", "Received, not yet applied"
        APPLIED = "applied", "Applied"
        DUPLICATE = "duplicate", "Duplicate (nothing changed)"
        STALE = "stale", "Older than applied data (ignored)"
        UNMATCHED = "unmatched", "Unknown flow or batch"
        REJECTED = "rejected", "Rejected (not valid)"
        FAILED = "failed", "Failed to apply"

    source = models.CharField(max_length=16, choices=Source)
    received_at = models.DateTimeField(default=timezone.now)
    body = models.BinaryField()
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    headers = models.JSONField(default=dict, blank=True)
    flow_uuid = models.CharField(max_length=64, blank=True, db_index=True)
    batch_id = models.CharField(max_length=128, blank=True, db_index=True)
    flow = models.ForeignKey(
        Flow, null=True, blank=True, on_delete=models.SET_NULL, related_name="payloads"
    )
    upload = models.ForeignKey(
        Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="payloads"
    )
    # When Atlas produced it (callback Date header or our fetch time): orders deliveries.
    as_of = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, default=Outcome.RECEIVED)
    error = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The sweeper: "stored but not yet applied" (broker lost the task).
            models.Index(
                fields=["received_at"], name="payload_pending_idx", condition=Q(outcome="received")
            ),
            models.Index(fields=["outcome", "-received_at"], name="payload_outcome_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.received_at:%Y-%m-%d %H:%M:%S} {self.outcome}"
