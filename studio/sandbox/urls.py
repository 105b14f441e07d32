from __future__ import annotations

from django.urls import path

from studio.sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("images/generations", views.images_generations, name="images-generations"),
    path("images/edits", views.images_edits, name="images-edits"),
    path("responses", views.responses_create, name="responses"),
]
