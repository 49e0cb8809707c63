from django.urls import path

from . import views

app_name = "checks"
urlpatterns = [
    path("reveal/<int:field_id>/", views.reveal, name="reveal"),
]
