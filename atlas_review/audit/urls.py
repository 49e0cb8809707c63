from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("exports/", views.exports_page, name="exports"),
    path("exports/download/", views.download, name="download"),
    path("exports/jobs/", views.start_job, name="start_job"),
    path("exports/jobs/<int:pk>/", views.job_page, name="job"),
    path("exports/jobs/<int:pk>/file/", views.job_file, name="job_file"),
]
