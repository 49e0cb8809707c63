from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from atlas_review.checks.masking import mask_value

from .models import CrossCheck, Document, ExtractedField, Flow, SyncState, Upload
from .tasks import sync_flow


def _link(obj, label=None):
    if obj is None:
        return "–"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or obj)


class UploadInline(admin.TabularInline):
    model = Upload
    fields = ("batch_id", "api", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = (
        "application_id", "flow_uuid", "product_type", "master_status", "sync_state",
        "document_total", "last_synced_at", "created_at",
    )  # fmt: skip
    list_filter = ("sync_state", "master_status", "product_type", "created_at")
    search_fields = ("application_id", "flow_uuid")
    readonly_fields = (
        "flow_uuid", "upload_status", "processing_status", "crosscheck_status", "master_status",
        "results_hash", "results_as_of", "results_source", "last_synced_at", "processing_started_at",
        "error_count", "last_error", "created_at", "updated_at", "documents_link",
    )  # fmt: skip
    inlines = [UploadInline]
    actions = ["resync"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_documents=Count("documents"))

    @admin.display(description="Documents", ordering="_documents")
    def document_total(self, obj):
        return obj._documents

    @admin.display(description="Documents")
    def documents_link(self, obj):
        url = reverse("admin:flows_document_changelist") + f"?flow__id__exact={obj.pk}"
        return format_html('<a href="{}">View documents</a>', url)

    @admin.action(description="Re-sync selected flows from Atlas", permissions=["change"])
    def resync(self, request, queryset):
        # Back to polling: the next step re-reads status and fetches results (idempotent).
        ids = list(queryset.values_list("pk", flat=True))
        queryset.exclude(flow_uuid=None).update(
            sync_state=SyncState.POLLING, next_sync_at=timezone.now(), error_count=0
        )
        queryset.filter(flow_uuid=None).update(
            sync_state=SyncState.NEW, next_sync_at=timezone.now()
        )
        for pk in ids:
            sync_flow.delay_on_commit(pk)
        self.message_user(request, f"Re-sync queued for {len(ids)} flow(s).", messages.SUCCESS)


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("batch_id", "api", "flow_link", "product_type", "sync_state", "created_at")
    list_filter = ("api", "sync_state", "product_type")
    search_fields = ("batch_id", "flow__application_id", "flow__flow_uuid")
    list_select_related = ("flow",)
    readonly_fields = (
        "results_hash",
        "results_as_of",
        "last_synced_at",
        "last_error",
        "created_at",
    )

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _link(obj.flow)


class MaskedValueMixin:
    @admin.display(description="Value")
    def shown_value(self, obj):
        # Aadhaar/PAN masked as on every page; the stored value stays whole.
        return mask_value(obj.document_type, obj.name, obj.value)


class FieldInline(MaskedValueMixin, admin.TabularInline):
    model = ExtractedField
    fields = ("name", "shown_value", "confidence", "withdrawn_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "flow_link",
        "document_id",
        "file_uuid",
        "document_type",
        "error_code",
        "withdrawn_at",
    )
    list_filter = ("document_type", "error_code")
    search_fields = ("document_id", "file_uuid", "flow__application_id", "flow__flow_uuid")
    list_select_related = ("flow",)
    raw_id_fields = ("flow", "v1_batch")
    inlines = [FieldInline]

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _link(obj.flow)

    def has_change_permission(self, request, obj=None):
        return False  # Atlas's data: read-only here


@admin.register(ExtractedField)
class ExtractedFieldAdmin(MaskedValueMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "document_type",
        "shown_value",
        "confidence",
        "flow_link",
        "withdrawn_at",
    )
    list_filter = ("document_type", "name")
    search_fields = ("name", "flow__application_id")
    list_select_related = ("flow",)
    raw_id_fields = ("document", "flow")
    show_full_result_count = False  # no COUNT(*) over a million fields
    exclude = ("value",)  # shown masked (shown_value), like every page a reviewer sees
    readonly_fields = ("shown_value",)

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _link(obj.flow)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CrossCheck)
class CrossCheckAdmin(admin.ModelAdmin):
    list_display = ("name", "source_doc", "target_doc", "similarity", "flow_link", "withdrawn_at")
    list_filter = ("name", "source_doc", "target_doc")
    search_fields = ("name", "flow__application_id", "flow__flow_uuid")
    list_select_related = ("flow",)
    raw_id_fields = ("flow",)
    show_full_result_count = False

    @admin.display(description="Flow")
    def flow_link(self, obj):
        return _link(obj.flow)

    def has_change_permission(self, request, obj=None):
        return False
