from django.urls import path

from . import views

app_name = "flows"
urlpatterns = [
    path("", views.flow_list, name="list"),
    path("<int:pk>/", views.flow_detail, name="detail"),
]
