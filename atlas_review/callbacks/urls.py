from django.urls import path

from . import views

app_name = "callbacks"
urlpatterns = [
    path("auth", views.auth, name="auth"),
    path("callback", views.callback, name="callback"),
    path("v1/callback", views.callback_v1, name="callback_v1"),
]
