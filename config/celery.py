from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The embedded filesystem broker needs its folders before the first message.
if app.conf.broker_url.startswith("filesystem://"):
    for folder in app.conf.broker_transport_options.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
