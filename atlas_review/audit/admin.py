from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import ExportJob


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """The export record is evidence of who took which data away: nobody edits or deletes
    it here (jobs update their own rows; the admin only reads)."""

    list_display = (
        "id", "created_at", "requested_by", "kind", "via", "status", "rows_written",
        "finished_at", "job_link",
    )  # fmt: skip
    list_filter = ("kind", "via", "status", "created_at")
    search_fields = ("requested_by", "user__username")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in ExportJob._meta.fields] + ["job_link"]

    @admin.display(description="Progress page")
    def job_link(self, obj):
        if obj.via != ExportJob.Via.BACKGROUND:
            return "–"
        return format_html('<a href="{}">Open</a>', reverse("audit:job", args=[obj.pk]))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
