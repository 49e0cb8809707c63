"""The review side of Atlas Review: what needs a human (the queue), who is on it (claims),
what they decided (decisions) and the append-only trail of every decision.

Atlas's own rows (flows.ExtractedField, flows.CrossCheck, flows.Document) are never written
here: decisions point at them and keep a snapshot of what Atlas said when the decision was
made.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from atlas_review.flows.models import CrossCheck, Document, ExtractedField, Flow, display


class Kind(models.TextChoices):
    FIELD = "field", "Field"
    CROSS_CHECK = "cross_check", "Cross-check"
    EXCEPTION = "exception", "Document exception"
    SYNC_FAILED = "sync_failed", "Sync failed"
    QA_SAMPLE = "qa_sample", "QA sample"
    REOPENED = "reopened", "Reopened"
    # Room for the checks of issue 9 (validation failures, reuse across applications).
    VALIDATION = "validation", "Validation"
    REUSE = "reuse", "Reuse alert"


# Kinds that are about the whole flow, not one item: the flow's outcome settles them, so
# they need no decision of their own.
FLOW_LEVEL_KINDS = frozenset({Kind.SYNC_FAILED, Kind.QA_SAMPLE, Kind.REOPENED})


class Queue(models.TextChoices):
    FIELDS = "fields", "Low-confidence fields"
    CHECKS = "checks", "Cross-checks"
    EXCEPTIONS = "exceptions", "Exceptions"
    QA = "qa", "QA sample"


# Which queue page shows each kind. A new kind only needs a line here.
QUEUE_OF_KIND: dict[str, str] = {
    Kind.FIELD: Queue.FIELDS,
    Kind.VALIDATION: Queue.FIELDS,
    Kind.CROSS_CHECK: Queue.CHECKS,
    Kind.EXCEPTION: Queue.EXCEPTIONS,
    Kind.SYNC_FAILED: Queue.EXCEPTIONS,
    Kind.REOPENED: Queue.EXCEPTIONS,
    Kind.REUSE: Queue.EXCEPTIONS,
    Kind.QA_SAMPLE: Queue.QA,
}


class Priority(models.IntegerChoices):
    # Lower sorts first.
    HIGH = 10, "High"
    NORMAL = 50, "Normal"
    LOW = 90, "Low"


class ItemStatus(models.TextChoices):
    OPEN = "open", "Open"
    DECIDED = "decided", "Decided"
    CLOSED = "closed", "Closed with the flow"
    CLEARED = "cleared", "No longer flagged"


class ReviewItemQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status=ItemStatus.OPEN)

    def in_queue(self, queue: str):
        return self.filter(queue=queue)

    def needing_decision(self):
        """Open items an agent must decide before the flow can be closed."""
        return self.open().exclude(kind__in=FLOW_LEVEL_KINDS)

    def queue_order(self):
        return self.order_by("priority", "created_at", "id")


class ReviewItem(models.Model):
    """One thing a person must look at: a field, a cross-check pair, a document exception,
    or the whole flow (sync failure, QA sample, reopened). Kept in step with Atlas's data
    by flagging.flag_flow; one row per (flow, key) for ever, its status moving."""

    # No FK index of its own: reviewitem_flow_key_uniq (flow, key) serves look-ups by flow.
    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, related_name="review_items", db_index=False
    )
    # Stable identity within the flow: "field:<id>", "check:<id>", "doc:<id>",
    # "missing:<doc id>:<name>", "sync", "qa", "reopened"...
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, choices=Kind)
    queue = models.CharField(max_length=16, choices=Queue)
    status = models.CharField(max_length=16, choices=ItemStatus, default=ItemStatus.OPEN)
    rule = models.CharField(max_length=64, help_text="Code of the rule that flagged it.")
    reason = models.TextField(help_text="Why it is in the queue, in words the agent reads.")
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    priority = models.SmallIntegerField(choices=Priority, default=Priority.NORMAL)

    field = models.ForeignKey(
        ExtractedField, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    cross_check = models.ForeignKey(
        CrossCheck, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Denormalised so queue filters need no join.
    product_type = models.CharField(max_length=64, blank=True)
    document_type = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=128, blank=True, help_text="Field or check name.")

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReviewItemQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flow", "key"], name="reviewitem_flow_key_uniq"),
        ]
        indexes = [
            # Queue pages and claim_next: "open items of queue Q, by priority then age",
            # read with keyset pagination on (priority, created_at, id); also the capped
            # counts per queue.
            models.Index(
                fields=["queue", "priority", "created_at", "id"],
                name="reviewitem_open_queue_idx",
                condition=Q(status="open"),
            ),
            # Queue pages filtered by field or check name ("all open INVOICE.customer_name").
            models.Index(
                fields=["queue", "name", "priority", "created_at", "id"],
                name="reviewitem_open_name_idx",
                condition=Q(status="open"),
            ),
            # The age filter ("open items older than a day"): a range on created_at, which
            # the queue-order index can only check entry by entry.
            models.Index(
                fields=["queue", "created_at"],
                name="reviewitem_open_age_idx",
                condition=Q(status="open"),
            ),
            # Queue pages with another status (decided, cleared...): same order.
            models.Index(
                fields=["queue", "status", "priority", "created_at", "id"],
                name="reviewitem_status_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.subject} ({self.status})"

    @property
    def subject(self) -> str:
        """What the item is about, as the agent reads it: "INVOICE.customer_name"."""
        if self.kind in (Kind.FIELD, Kind.VALIDATION, Kind.REUSE):
            return f"{self.document_type}.{self.name}"
        if self.kind == Kind.EXCEPTION:
            return self.document_type or "Unrecognised document"
        return self.name or self.get_kind_display()

    @property
    def needs_decision(self) -> bool:
        return self.kind not in FLOW_LEVEL_KINDS

    @property
    def is_open(self) -> bool:
        return self.status == ItemStatus.OPEN

    def atlas_snapshot(self) -> tuple[object, float | None]:
        """Atlas's value and score for this item now (what a decision is made on)."""
        if self.field_id is not None:
            return self.field.value, self.field.confidence
        if self.cross_check_id is not None:
            c = self.cross_check
            return {"source": c.source_value, "target": c.target_value}, c.similarity
        if self.document_id is not None and self.kind == Kind.EXCEPTION:
            d = self.document
            return {"error_code": d.error_code, "error_reason": d.error_reason}, None
        return None, self.score


class Outcome(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    NEEDS_INFO = "needs_info", "Needs more information"


class FlowReview(models.Model):
    """The review state of one flow: who holds it and how it ended. Created by flagging for
    every flow with results, so claims are always an UPDATE of an existing row."""

    flow = models.OneToOneField(
        Flow, primary_key=True, on_delete=models.CASCADE, related_name="review"
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, blank=True)
    outcome_comment = models.TextField(blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [
            ("decide", "Can claim flows and decide their items"),
            ("release_claim", "Can release another agent's claim"),
            ("reopen_flow", "Can reopen a closed flow"),
            ("view_all_work", "Can see every agent's decisions"),
        ]
        indexes = [
            # Re-flagging after a threshold change walks flows whose review is not closed.
            models.Index(
                fields=["flow"], name="flowreview_unclosed_idx", condition=Q(closed_at=None)
            ),
            # Supervisors' "held by" filter lists who holds claims now (few rows).
            models.Index(
                fields=["claimed_by", "claim_expires_at"],
                name="flowreview_claimed_idx",
                condition=Q(claimed_by__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Review of flow {self.flow_id}"

    def get_absolute_url(self) -> str:
        return reverse("review:flow", args=[self.flow_id])

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None

    def holder(self, now=None):
        """The user holding a live claim, or None."""
        now = now or timezone.now()
        if self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now:
            return self.claimed_by
        return None

    def held_by_other(self, user, now=None) -> bool:
        holder = self.holder(now)
        return holder is not None and holder.pk != user.pk


class ReasonCode(models.Model):
    """Why an agent rejects an item; administrators manage the list."""

    code = models.SlugField(max_length=64, unique=True)
    label = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    order = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["order", "label"]

    def __str__(self) -> str:
        return self.label


class Scope(models.TextChoices):
    CONFIDENCE = "confidence", "Field confidence (0..1)"
    SIMILARITY = "similarity", "Cross-check similarity (0..100)"


class Threshold(models.Model):
    """An override of the default thresholds (settings REVIEW_*). The most specific row
    wins: document type + field, then document type, then field name, then the default;
    for similarity, the check name, then the default."""

    scope = models.CharField(max_length=16, choices=Scope)
    document_type = models.CharField(max_length=64, blank=True, help_text="Confidence only.")
    field_name = models.CharField(max_length=128, blank=True, help_text="Confidence only.")
    check_name = models.CharField(max_length=128, blank=True, help_text="Similarity only.")
    value = models.FloatField(help_text="Items scoring below this are flagged.")
    high_priority_below = models.FloatField(
        null=True, blank=True, help_text="Similarity only: below this the pair is high priority."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "document_type", "field_name", "check_name"],
                name="threshold_target_uniq",
            ),
        ]
        ordering = ["scope", "document_type", "field_name", "check_name"]

    def __str__(self) -> str:
        target = self.check_name or ".".join(p for p in (self.document_type, self.field_name) if p)
        return f"{self.scope} {target or '(default)'} < {self.value:g}"

    def clean(self) -> None:
        if self.scope == Scope.CONFIDENCE:
            if not 0 <= self.value <= 1:
                raise ValidationError({"value": "A confidence threshold is between 0 and 1."})
            if self.check_name or self.high_priority_below is not None:
                raise ValidationError("Check name and high priority apply to similarity only.")
        else:
            if not 0 <= self.value <= 100:
                raise ValidationError({"value": "A similarity threshold is between 0 and 100."})
            if self.document_type or self.field_name:
                raise ValidationError("Document type and field name apply to confidence only.")


class MandatoryField(models.Model):
    """A field every document of a type must have: missing or empty flags it."""

    document_type = models.CharField(max_length=64)
    field_name = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document_type", "field_name"], name="mandatoryfield_uniq"
            ),
        ]
        ordering = ["document_type", "field_name"]

    def __str__(self) -> str:
        return f"{self.document_type}.{self.field_name}"


class Action(models.TextChoices):
    ACCEPT = "accept", "Accepted"
    CORRECT = "correct", "Corrected"
    REJECT = "reject", "Rejected"


class Decision(models.Model):
    """The current decision on an item. At most one per item is current; a decision made
    on a value Atlas later changed is kept, marked superseded, and a new one can be made."""

    item = models.ForeignKey(ReviewItem, on_delete=models.PROTECT, related_name="decisions")
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="decisions")
    action = models.CharField(max_length=16, choices=Action)
    corrected_value = models.JSONField(null=True, blank=True)
    reason = models.ForeignKey(ReasonCode, null=True, blank=True, on_delete=models.PROTECT)
    comment = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions"
    )
    decided_at = models.DateTimeField(default=timezone.now)
    # What Atlas said when the decision was made (Atlas rows may change later).
    atlas_value = models.JSONField(null=True, blank=True)
    atlas_score = models.FloatField(null=True, blank=True)
    superseded = models.BooleanField(default=False)
    superseded_at = models.DateTimeField(null=True, blank=True)
    # Optimistic concurrency: a change names the version it saw.
    version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            # Two agents deciding the same item at once: the second INSERT fails here.
            models.UniqueConstraint(
                fields=["item"], condition=Q(superseded=False), name="decision_one_current"
            ),
            models.CheckConstraint(
                condition=~Q(action="reject") | Q(reason__isnull=False),
                name="decision_reject_has_reason",
            ),
        ]
        indexes = [
            # "My decided items" and per-agent exports.
            models.Index(fields=["author", "-decided_at"], name="decision_author_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.author_id} on item {self.item_id}"

    @property
    def display_corrected(self) -> str:
        return display(self.corrected_value)


class DecisionEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Decision events are append-only.")

    def delete(self):
        raise TypeError("Decision events are append-only.")


class EventKind(models.TextChoices):
    DECIDED = "decided", "Decided"
    CHANGED = "changed", "Decision changed"
    SUPERSEDED = "superseded", "Superseded by new Atlas data"
    OUTCOME = "outcome", "Flow closed with outcome"
    CLAIM_RELEASED = "claim_released", "Claim released"
    REOPENED = "reopened", "Flow reopened"


class DecisionEvent(models.Model):
    """The decision trail: one row per decision, change, outcome, release or reopen.
    Append-only: the model refuses updates and deletes, and so does a database trigger."""

    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=EventKind)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
        related_name="+", help_text="Empty when the system acted (Atlas re-delivery).",
    )  # fmt: skip
    actor_username = models.CharField(max_length=150, blank=True)
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="decision_events")
    item = models.ForeignKey(
        ReviewItem, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    decision = models.ForeignKey(
        Decision, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    field = models.ForeignKey(
        ExtractedField, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cross_check = models.ForeignKey(
        CrossCheck, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    subject = models.CharField(max_length=300, blank=True)
    action = models.CharField(max_length=16, choices=Action, blank=True)
    atlas_value = models.JSONField(null=True, blank=True)
    atlas_score = models.FloatField(null=True, blank=True)
    new_value = models.JSONField(null=True, blank=True)
    reason = models.ForeignKey(ReasonCode, null=True, blank=True, on_delete=models.PROTECT)
    # The reason's code and label as they read at the time (admins may rename them).
    reason_code = models.CharField(max_length=64, blank=True)
    reason_label = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, blank=True)
    # Anything else worth keeping: the outcome's summary, whose claim was released...
    data = models.JSONField(default=dict, blank=True)

    objects = DecisionEventQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            models.Index(fields=["flow", "at"], name="decisionevent_flow_idx"),
            # The decisions export streams the trail in (at, id) order: no sort step.
            models.Index(fields=["at", "id"], name="decisionevent_at_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.kind} {self.subject} by {self.actor_username}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Decision events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Decision events are append-only.")
