from __future__ import annotations

from django.urls import path, re_path

from api import door, responses_door

app_name = "door"
urlpatterns = [
    path("images/generations", door.images_generations, name="images-generations"),
    path("images/edits", door.images_edits, name="images-edits"),
    path("responses", responses_door.responses, name="responses"),
    re_path(r"^.*$", door.not_found, name="not-found"),
]
