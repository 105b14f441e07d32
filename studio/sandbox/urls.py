from __future__ import annotations

from django.urls import path

from studio.sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("images/generations", views.images_generations, name="images-generations"),
    path("images/edits", views.images_edits, name="images-edits"),
    path("responses", views.responses_create, name="responses"),
    path("files", views.files_create, name="files"),
    path("files/<str:file_id>", views.files_retrieve, name="file"),
    path("files/<str:file_id>/content", views.files_content, name="file-content"),
    path("batches", views.batches_collection, name="batches"),
    path("batches/<str:batch_id>", views.batches_retrieve, name="batch"),
    path("batches/<str:batch_id>/cancel", views.batches_cancel, name="batch-cancel"),
]
