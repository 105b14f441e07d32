from __future__ import annotations

from django.urls import path

from studio.sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("images/generations", views.images_generations, name="images-generations"),
]
