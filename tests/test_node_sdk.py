"""OpenAI's Node SDK (npm `openai`, installed by `make test` from package.json) against the
/v1/ door on a live server, with a real Celery worker and the sandbox route."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from api.models import ApiToken
from studio.models import GenerationRequest, Status
from tests.edit_fixtures import mask_png, source_png
from tests.worker import BASE_DIR

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.services,
    pytest.mark.usefixtures("ledger_checked"),
    pytest.mark.timeout(300),
]


def test_the_node_sdk_generates_edits_streams_and_reads_errors(
    live_server, live_sandbox, celery_worker, settings, designer, tmp_path
):
    settings.MEDIA_ROOT = celery_worker.media_root
    node = shutil.which("node")
    assert node, "node is missing: `make test` installs what the tests need"
    assert (BASE_DIR / "node_modules" / "openai").is_dir(), "run `npm install` (make test does)"
    (tmp_path / "room.png").write_bytes(source_png())
    (tmp_path / "mask.png").write_bytes(mask_png())
    secret = ApiToken.create_for(designer, "node").secret
    run = subprocess.run(
        [
            node,
            "tests/node/door.mjs",
            f"{live_server.url}/v1",
            secret,
            str(tmp_path / "room.png"),
            str(tmp_path / "mask.png"),
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["generate"]["images"] == 1 and result["generate"]["b64_length"] > 1000
    assert result["generate"]["output_tokens"] > 0
    assert result["edit"]["images"] == 1
    assert result["stream"] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert result["bad_key"] == {
        "status": 401,
        "code": "invalid_api_key",
        "name": "AuthenticationError",
    }
    assert result["bad_size"] == {"status": 400, "param": "size"}
    requests = GenerationRequest.objects.order_by("created_at")
    assert [(r.operation, r.status) for r in requests] == [
        ("generate", Status.SUCCEEDED),
        ("edit", Status.SUCCEEDED),
        ("generate", Status.SUCCEEDED),
    ]
