"""Every page names the studio's icon, the admin's too, and /favicon.ico leads to it."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_admin_names_the_icon(client):
    page = client.get(reverse("admin:login")).content.decode()
    assert 'rel="icon"' in page and "favicon.svg" in page
    assert "Django administration" in page or "site-name" in page  # still Django's header


def test_favicon_ico_redirects_to_the_svg(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response.url.endswith("favicon.svg")
    assert finders.find("favicon.svg")
    assert client.post("/favicon.ico").status_code == 405
