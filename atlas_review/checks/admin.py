from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from .masking import mask_identifier, mask_value
from .models import FieldCheck, FieldCheckResult, IdentifierSighting, RevealEvent
from .services import recheck_all


@admin.register(FieldCheck)
class FieldCheckAdmin(admin.ModelAdmin):
    list_display = ("document_type", "field_name", "check_code", "active")
    list_editable = ("active",)
    list_filter = ("check_code", "active", "document_type")
    search_fields = ("document_type", "field_name")
    actions = ["recheck"]

    @admin.action(description="Re-run all checks on every current field", permissions=["change"])
    def recheck(self, request, queryset):
        # Edits take effect at the next ingest of each flow; this applies them now, and then
        # re-evaluates the open flows' queue items, which follow the failed checks.
        from atlas_review.review.tasks import reflag_open_flows

        seen = recheck_all()
        transaction.on_commit(lambda: reflag_open_flows.delay(0))
        self.message_user(
            request, f"Checked {seen} fields; open flows are being re-flagged.", messages.SUCCESS
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _flow_link(flow_id):
    if flow_id is None:
        return "–"
    url = reverse("admin:flows_flow_change", args=[flow_id])
    return format_html('<a href="{}">{}</a>', url, flow_id)


@admin.register(FieldCheckResult)
class FieldCheckResultAdmin(ReadOnlyAdmin):
    list_display = ("field", "check_code", "passed", "reason", "checked_at")
    list_filter = ("check_code", "passed")
    list_select_related = ("field",)
    raw_id_fields = ("field",)
    show_full_result_count = False


@admin.register(RevealEvent)
class RevealEventAdmin(ReadOnlyAdmin):
    """The reveal trail, read-only: the values stay masked here too."""

    list_display = ("at", "actor_username", "subject", "shown_value", "flow_link")
    list_filter = ("document_type", "field_name")
    search_fields = ("actor_username", "flow__application_id")
    date_hierarchy = "at"
    fields = ("at", "actor_username", "subject", "shown_value", "flow_link", "field_id")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="Value")
    def shown_value(self, obj):
        return mask_value(obj.document_type, obj.field_name, obj.value)

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _flow_link(obj.flow_id)


@admin.register(IdentifierSighting)
class IdentifierSightingAdmin(ReadOnlyAdmin):
    list_display = ("kind", "shown_value", "flow_link", "field_id", "seen_at")
    list_filter = ("kind",)
    fields = ("kind", "shown_value", "flow_link", "field_id", "seen_at")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="Value")
    def shown_value(self, obj):
        return mask_identifier(obj.kind, obj.value)

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _flow_link(obj.flow_id)
