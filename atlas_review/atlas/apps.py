from django.apps import AppConfig


class AtlasConfig(AppConfig):
    name = "atlas_review.atlas"
    label = "atlas"
    verbose_name = "Atlas API"
