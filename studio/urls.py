from __future__ import annotations

from django.urls import path

from studio import views

app_name = "studio"
urlpatterns = [
    path("", views.home, name="home"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_new, name="request-new"),
    path("requests/new/preview", views.composer_preview, name="composer-preview"),
    path("requests/edit/", views.edit_new, name="edit-new"),
    path("requests/edit/preview", views.edit_preview, name="edit-preview"),
    path("requests/<uuid:request_id>/", views.request_detail, name="request-detail"),
    path("requests/<uuid:request_id>/again", views.request_run_again, name="request-run-again"),
    path("requests/<uuid:request_id>/cancel", views.request_cancel, name="request-cancel"),
    path(
        "requests/<uuid:request_id>/suggested-edit/<int:decision_id>",
        views.suggested_edit,
        name="suggested-edit",
    ),
    path(
        "requests/<uuid:request_id>/suggested-edit/<int:decision_id>/region.png",
        views.suggested_region,
        name="suggested-region",
    ),
    path("conversations/", views.conversation_list, name="conversation-list"),
    path("conversations/new/", views.conversation_new, name="conversation-new"),
    path("conversations/labels", views.turn_labels, name="turn-labels"),
    path(
        "conversations/<uuid:conversation_id>/",
        views.conversation_detail,
        name="conversation-detail",
    ),
    path(
        "conversations/<uuid:conversation_id>/turn",
        views.conversation_turn,
        name="conversation-turn",
    ),
    path("outputs/<uuid:output_id>/file", views.output_file, name="output-file"),
    path("outputs/<uuid:output_id>/drift.png", views.output_drift, name="output-drift"),
    path("inputs/<uuid:input_id>/file", views.input_file, name="input-file"),
    path("outputs/<uuid:output_id>/download", views.output_download, name="output-download"),
    path("outputs/<uuid:output_id>/thumbnail", views.output_thumbnail, name="output-thumbnail"),
    path("inputs/<uuid:input_id>/download", views.input_download, name="input-download"),
]
