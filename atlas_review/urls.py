from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="review:home", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("flows/", include("atlas_review.flows.urls")),
    path("review/", include("atlas_review.review.urls")),
    path("atlas/", include("atlas_review.callbacks.urls")),
    path("checks/", include("atlas_review.checks.urls")),
    path("audit/", include("atlas_review.audit.urls")),
    path("overview/", include("atlas_review.overview.urls")),
    path("admin/", admin.site.urls),
]
