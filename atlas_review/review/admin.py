"""Admin: thresholds, reason codes and mandatory fields are edited here; queue items,
reviews, decisions and the decision trail are shown read-only."""

from django.contrib import admin, messages
from django.db import transaction

from .models import (
    Decision,
    DecisionEvent,
    FlowReview,
    MandatoryField,
    ReasonCode,
    ReviewItem,
    Threshold,
)
from .tasks import reflag_open_flows


def _reflag_after_commit(request) -> None:
    transaction.on_commit(lambda: reflag_open_flows.delay(0))
    messages.info(request, "Open flows are being re-evaluated against the new rules.")


@admin.action(description="Re-evaluate all open flows against the current rules")
def reflag_open(modeladmin, request, queryset) -> None:
    _reflag_after_commit(request)


class RulesAdmin(admin.ModelAdmin):
    """A change to a rule re-evaluates every open flow (a Celery task, in chunks)."""

    actions = [reflag_open]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        _reflag_after_commit(request)

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        _reflag_after_commit(request)


@admin.register(Threshold)
class ThresholdAdmin(RulesAdmin):
    list_display = ["scope", "document_type", "field_name", "check_name", "value", "high_priority_below"]  # fmt: skip
    list_filter = ["scope"]
    search_fields = ["document_type", "field_name", "check_name"]


@admin.register(MandatoryField)
class MandatoryFieldAdmin(RulesAdmin):
    list_display = ["document_type", "field_name"]
    list_filter = ["document_type"]
    search_fields = ["document_type", "field_name"]


@admin.register(ReasonCode)
class ReasonCodeAdmin(admin.ModelAdmin):
    list_display = ["label", "code", "active", "order"]
    list_editable = ["active", "order"]
    search_fields = ["code", "label"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Decisions point at reason codes; retire one by unticking "active".
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "flow", "kind", "status", "priority", "document_type", "name", "reason", "created_at"]  # fmt: skip
    list_filter = ["queue", "kind", "status", "priority"]
    search_fields = ["flow__application_id", "flow__flow_uuid", "name", "document_type"]
    list_select_related = ["flow"]
    show_full_result_count = False


@admin.register(FlowReview)
class FlowReviewAdmin(ReadOnlyAdmin):
    list_display = ["flow", "claimed_by", "claim_expires_at", "outcome", "closed_at", "closed_by"]
    list_filter = ["outcome"]
    search_fields = ["flow__application_id", "flow__flow_uuid"]
    list_select_related = ["flow", "claimed_by", "closed_by"]
    show_full_result_count = False


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = ["id", "flow", "item", "action", "author", "decided_at", "superseded"]
    list_filter = ["action", "superseded"]
    search_fields = ["flow__application_id", "author__username"]
    list_select_related = ["flow", "item", "author"]
    show_full_result_count = False


@admin.register(DecisionEvent)
class DecisionEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "kind", "actor_username", "flow", "subject", "action", "outcome"]
    list_filter = ["kind", "action", "outcome"]
    search_fields = ["flow__application_id", "actor_username", "subject"]
    list_select_related = ["flow"]
    show_full_result_count = False
