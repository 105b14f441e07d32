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
    for key, folder in app.conf.broker_transport_options.items():
        if key.endswith("_folder") or key.startswith("data_folder"):
            Path(folder).mkdir(parents=True, exist_ok=True)
