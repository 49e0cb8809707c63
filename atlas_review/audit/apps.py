from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "atlas_review.audit"
    label = "audit"
