from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "atlas_review.callbacks"
    label = "callbacks"
