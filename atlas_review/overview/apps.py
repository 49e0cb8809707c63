from django.apps import AppConfig


class OverviewConfig(AppConfig):
    name = "atlas_review.overview"
    label = "overview"
