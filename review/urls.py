from __future__ import annotations

from django.urls import path

from review import views

app_name = "review"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("outputs/<uuid:output_id>/", views.output_review, name="output"),
    path("outputs/<uuid:output_id>/inspection", views.inspection, name="inspection"),
    path("outputs/<uuid:output_id>/decide", views.output_decide, name="decide"),
]
