from django.urls import path

from . import views

app_name = "review"
urlpatterns = [
    path("", views.home, name="home"),
    path("counts/", views.nav_counts, name="nav_counts"),
    path("queue/<str:queue>/", views.queue, name="queue"),
    path("queue/<str:queue>/next/", views.next_flow, name="next"),
    path("flows/<int:flow_id>/", views.flow_review, name="flow"),
    path("flows/<int:flow_id>/items/<int:item_id>/decide/", views.decide, name="decide"),
    path("flows/<int:flow_id>/close/", views.close, name="close"),
    path("flows/<int:flow_id>/skip/", views.skip, name="skip"),
    path("flows/<int:flow_id>/release/", views.release, name="release"),
    path("flows/<int:flow_id>/reopen/", views.reopen, name="reopen"),
]
