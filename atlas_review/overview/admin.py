from django.contrib import admin

from .models import QueueSla


@admin.register(QueueSla)
class QueueSlaAdmin(admin.ModelAdmin):
    list_display = ["queue", "hours"]
    list_editable = ["hours"]
