from __future__ import annotations

from django.urls import path

from studio import views

app_name = "studio"
urlpatterns = [
    path("", views.home, name="home"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_new, name="request-new"),
    path("requests/new/preview", views.composer_preview, name="composer-preview"),
    path("requests/<uuid:request_id>/", views.request_detail, name="request-detail"),
    path("requests/<uuid:request_id>/again", views.request_run_again, name="request-run-again"),
    path("requests/<uuid:request_id>/cancel", views.request_cancel, name="request-cancel"),
    path("outputs/<uuid:output_id>/file", views.output_file, name="output-file"),
]
