from __future__ import annotations

from django.urls import path

from api import views

app_name = "webhooks"
urlpatterns = [
    path("", views.webhook_list, name="list"),
    path("<int:webhook_id>/", views.webhook_detail, name="detail"),
    path("<int:webhook_id>/delete", views.webhook_delete, name="delete"),
    path(
        "<int:webhook_id>/deliveries/<int:delivery_id>/replay",
        views.webhook_replay,
        name="replay",
    ),
]
