from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "atlas_review.flows"
    label = "flows"
