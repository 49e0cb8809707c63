"""Admin for callback credentials, refused attempts and the payload journal.

Secrets are shown exactly once, in the response to the request that created them (never
through the messages framework, whose cookie storage would carry them to the next request).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.text import Truncator

from atlas_review.flows.models import Payload

from . import services
from .models import AuthAttempt, CallbackCredential

SECRETS_TEMPLATE = "admin/callbacks/secrets.html"
CONFIRM_TEMPLATE = "admin/callbacks/confirm_action.html"
BODY_PREVIEW_BYTES = 20_000


def _secrets_page(request, model_admin, rows: list[tuple[CallbackCredential, str]], title: str):
    response = TemplateResponse(
        request,
        SECRETS_TEMPLATE,
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": title,
            "rows": rows,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


def _confirm_page(request, model_admin, queryset, action: str, question: str):
    return TemplateResponse(
        request,
        CONFIRM_TEMPLATE,
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.model._meta,
            "title": question,
            "queryset": queryset,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )


@admin.register(CallbackCredential)
class CallbackCredentialAdmin(admin.ModelAdmin):
    list_display = ["client_id", "label", "is_active", "created_at", "rotated_at", "last_used_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["client_id", "label"]
    readonly_fields = ["created_at", "rotated_at", "revoked_at", "last_used_at"]
    actions = ["rotate", "revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: CallbackCredential) -> bool:
        return obj.is_active

    def get_readonly_fields(self, request, obj=None):
        # A client id is what Atlas is configured with: changing it would be a new credential.
        return [*self.readonly_fields, "client_id"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj._new_secret = obj.set_new_secret()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(obj, "_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return _secrets_page(request, self, [(obj, secret)], "Callback credential created")

    @admin.action(description="Rotate the secret of selected credentials", permissions=["change"])
    def rotate(self, request, queryset):
        if not request.POST.get("confirm"):
            return _confirm_page(
                request,
                self,
                queryset,
                "rotate",
                "Rotate these secrets? The current secrets and their tokens stop working now.",
            )
        rows = [(c, services.rotate_credential(c)) for c in queryset.active()]
        if not rows:
            self.message_user(request, "Revoked credentials cannot be rotated.", messages.WARNING)
            return None
        return _secrets_page(request, self, rows, "New callback secrets")

    @admin.action(description="Revoke selected credentials", permissions=["change"])
    def revoke(self, request, queryset):
        if not request.POST.get("confirm"):
            return _confirm_page(
                request,
                self,
                queryset,
                "revoke",
                "Revoke these credentials? Atlas can no longer get tokens with them.",
            )
        count = sum(services.revoke_credential(c) for c in queryset)
        self.message_user(request, f"Revoked {count} credential(s).", messages.SUCCESS)
        return None


@admin.register(AuthAttempt)
class AuthAttemptAdmin(admin.ModelAdmin):
    list_display = ["created_at", "endpoint", "reason", "client_id", "remote_addr"]
    list_filter = ["endpoint", "reason"]
    search_fields = ["client_id", "remote_addr"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PayloadAdmin(admin.ModelAdmin):
    """The journal, read-only: every raw body received and what became of it."""

    list_display = [
        "id",
        "received_at",
        "source",
        "outcome",
        "flow_uuid",
        "batch_id",
        "size",
        "attempts",
        "short_error",
    ]
    list_filter = ["outcome", "source"]
    search_fields = ["flow_uuid", "batch_id", "=sha256"]
    date_hierarchy = "received_at"
    list_select_related = False
    show_full_result_count = False
    actions = ["reapply"]
    fields = [
        "source",
        "outcome",
        "error",
        "received_at",
        "as_of",
        "applied_at",
        "attempts",
        "flow_uuid",
        "batch_id",
        "flow",
        "upload",
        "size",
        "sha256",
        "headers",
        "body_preview",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        # Bodies can be megabytes: the list never loads them.
        return super().get_queryset(request).defer("body")

    @admin.display(description="error")
    def short_error(self, obj: Payload) -> str:
        return Truncator(obj.error).chars(100)

    @admin.display(description="body")
    def body_preview(self, obj: Payload) -> str:
        raw = bytes(obj.body)
        text = raw[:BODY_PREVIEW_BYTES].decode("utf-8", errors="replace")
        note = (
            f"(first {BODY_PREVIEW_BYTES:,} of {len(raw):,} bytes)"
            if len(raw) > BODY_PREVIEW_BYTES
            else f"({len(raw):,} bytes)"
        )
        # format_html escapes the body: it is untrusted input shown to an administrator.
        return format_html("<p>{}</p><pre>{}</pre>", note, text)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # The change list (obj None) needs it for the re-apply action; a payload itself
        # is never edited.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Re-apply selected payloads", permissions=["change"])
    def reapply(self, request, queryset):
        # Applied rows would only turn into "duplicate": re-apply what did not take effect.
        ids = list(
            queryset.exclude(outcome__in=(Payload.Outcome.APPLIED, Payload.Outcome.DUPLICATE))
            .order_by("received_at", "id")
            .values_list("pk", flat=True)
        )
        skipped = queryset.count() - len(ids)
        services.reapply(ids)
        text = f"Re-apply started for {len(ids)} payload(s)."
        if skipped:
            text += f" Skipped {skipped} already applied or duplicate."
        self.message_user(request, text, messages.SUCCESS)


if not admin.site.is_registered(Payload):
    admin.site.register(Payload, PayloadAdmin)
