"""The embedded broker (kombu's filesystem transport) never shows a worker half a message."""

from __future__ import annotations

import pytest
from kombu import Connection
from kombu.transport import filesystem as kombu_filesystem

from config import broker


def test_the_embedded_defaults_use_the_guarded_transport(tmp_path):
    from tests.test_settings import run_manage

    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.CELERY_BROKER_TRANSPORT)",
        CELERY_BROKER_URL="filesystem://",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'studio.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "config.broker:FilesystemTransport"


@pytest.mark.parametrize(
    ("transport", "torn"),
    [(broker.FilesystemTransport, False), (kombu_filesystem.Transport, True)],
    ids=["studio", "kombu-5.7.0"],
)
def test_a_message_is_visible_only_once_written_whole(tmp_path, monkeypatch, transport, torn):
    """kombu 5.7.0 creates the message file, then writes it: a worker listing the folder in
    between takes an empty message and quits ("Unrecoverable error: JSONDecodeError", seen
    with 2,000 submissions at once). While the body is being serialised, no empty message
    file may be visible (the kombu case shows the check can fail)."""
    folder = tmp_path / "queue"
    folder.mkdir()
    seen_empty = []

    def watching(module):
        original = module.dumps

        def dumps(value, *args, **kwargs):
            seen_empty.extend(p.name for p in folder.glob("*.msg") if p.stat().st_size == 0)
            return original(value, *args, **kwargs)

        return dumps

    monkeypatch.setattr(broker, "dumps", watching(broker))
    monkeypatch.setattr(kombu_filesystem, "dumps", watching(kombu_filesystem))
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    with Connection(transport=transport, transport_options=options) as connection:
        queue = connection.SimpleQueue("burst")
        queue.put({"request": "one"})
        assert queue.get(timeout=5).payload == {"request": "one"}
        queue.close()
    assert bool(seen_empty) is torn
    assert not list(folder.glob("*.part"))
