"""The sandbox's Files API and Batch API, in OpenAI's wire shapes.

    POST /files                 multipart: file, purpose ("batch")  -> File
    GET  /files/{id}            -> File
    GET  /files/{id}/content    -> the file's bytes
    POST /batches               {input_file_id, endpoint, completion_window: "24h"} -> Batch
    GET  /batches               -> list of Batch, newest first (limit, after)
    GET  /batches/{id}          -> Batch (runs it once SANDBOX_BATCH_SECONDS have passed)
    POST /batches/{id}/cancel   -> Batch, cancelled

A batch of `/v1/images/generations` lines runs the first time it is retrieved after
SANDBOX_BATCH_SECONDS (default 1): each line is answered as the generations endpoint would
answer it (same checks, same drawing, same usage), into the output file when it succeeds
and the error file when it does not, each with its custom_id. Directives in a line's
prompt make the batch misbehave:

    [sandbox:batch-fail]     the line fails (an `error` object, no response)
    [sandbox:batch-missing]  the line is left out of both files
    [sandbox:batch-garbled]  the line's output is not JSON
    [sandbox:batch-expire]   the batch expires: every line not yet run ends batch_expired

Edits (`/v1/images/edits`) are not run by the sandbox's batches: such a line ends in the
error file, named.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from studio.sandbox import generations, responses
from studio.sandbox.directives import Directives
from studio.sandbox.models import SandboxBatch, SandboxFile
from studio.sandbox.params import InvalidRequest, read_image_request

ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
RUN_ENDPOINTS = ("/v1/images/generations",)
MAX_FILE_BYTES = 200 * 1024 * 1024
OPEN_STATES = ("validating", "in_progress", "finalizing")


def _epoch(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _present(body: dict) -> dict:
    """Fields with a value: OpenAI's schemas type most as plain strings and integers."""
    return {name: value for name, value in body.items() if value is not None}


def file_object(item: SandboxFile) -> dict:
    return _present(
        {
            "id": item.id,
            "object": "file",
            "bytes": len(item.content),
            "created_at": _epoch(item.created_at),
            "filename": item.filename,
            "purpose": item.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
    )


def batch_object(batch: SandboxBatch) -> dict:
    return _present(
        {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": batch.errors,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id or None,
            "error_file_id": batch.error_file_id or None,
            "created_at": _epoch(batch.created_at),
            "in_progress_at": _epoch(batch.in_progress_at),
            "expires_at": _epoch(batch.created_at + timedelta(hours=24)),
            "finalizing_at": _epoch(batch.finalizing_at),
            "completed_at": _epoch(batch.completed_at),
            "failed_at": _epoch(batch.failed_at),
            "expired_at": _epoch(batch.expired_at),
            "cancelling_at": _epoch(batch.cancelling_at),
            "cancelled_at": _epoch(batch.cancelled_at),
            "request_counts": {
                "total": batch.total,
                "completed": batch.completed,
                "failed": batch.failed,
            },
            "metadata": batch.metadata,
        }
    )


def store_file(filename: str, purpose: str, content: bytes) -> SandboxFile:
    return SandboxFile.objects.create(
        id=f"file-{uuid.uuid4().hex[:24]}", filename=filename, purpose=purpose, content=content
    )


def create_batch(fields: dict) -> SandboxBatch:
    """Check a batch's parameters as the Batch API does; InvalidRequest names the bad one."""
    endpoint = fields.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise InvalidRequest(
            f"Invalid value for 'endpoint': the sandbox's batches take {', '.join(ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    if fields.get("completion_window") != "24h":
        raise InvalidRequest(
            "Invalid value for 'completion_window': only '24h' is supported.",
            param="completion_window",
            code="invalid_value",
        )
    file_id = fields.get("input_file_id")
    source = SandboxFile.objects.filter(pk=file_id if isinstance(file_id, str) else "").first()
    if source is None:
        raise InvalidRequest(
            f"No such File object: {str(file_id)[:64]}", param="input_file_id", code=None
        )
    if source.purpose != "batch":
        raise InvalidRequest(
            "The input file must be uploaded with purpose 'batch'.",
            param="input_file_id",
            code="invalid_value",
        )
    metadata = fields.get("metadata")
    lines = [line for line in bytes(source.content).splitlines() if line.strip()]
    return SandboxBatch.objects.create(
        id=f"batch_{uuid.uuid4().hex[:24]}",
        endpoint=endpoint,
        input_file_id=source.id,
        metadata=metadata if isinstance(metadata, dict) else None,
        total=len(lines),
    )


def advance(batch: SandboxBatch) -> SandboxBatch:
    """Run a batch whose time has come (once); anything else is answered as it stands."""
    if batch.status not in OPEN_STATES:
        return batch
    if timezone.now() - batch.created_at < timedelta(seconds=settings.SANDBOX_BATCH_SECONDS):
        if batch.status == "validating":
            batch.status, batch.in_progress_at = "in_progress", timezone.now()
            batch.save(update_fields=["status", "in_progress_at"])
        return batch
    claimed = SandboxBatch.objects.filter(pk=batch.pk, status__in=OPEN_STATES).update(
        status="finalizing", finalizing_at=timezone.now()
    )
    if claimed:
        _run(SandboxBatch.objects.get(pk=batch.pk))
    batch.refresh_from_db()
    return batch


def _run(batch: SandboxBatch) -> None:
    source = SandboxFile.objects.get(pk=batch.input_file_id)
    outputs: list[bytes] = []
    errors: list[bytes] = []
    expired = False
    for raw in bytes(source.content).splitlines():
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            custom_id = str(item["custom_id"])
        except (ValueError, KeyError, TypeError):
            errors.append(_error_line(None, "invalid_json_line", "This line is not valid JSON."))
            batch.failed += 1
            continue
        body = item.get("body") if isinstance(item.get("body"), dict) else {}
        prompt = str(body.get("prompt", ""))
        if expired or "[sandbox:batch-expire]" in prompt:
            expired = True
            errors.append(
                _error_line(
                    custom_id,
                    "batch_expired",
                    "This request could not be executed before the completion window expired.",
                )
            )
            continue
        if "[sandbox:batch-missing]" in prompt:
            continue
        if "[sandbox:batch-fail]" in prompt:
            errors.append(_error_line(custom_id, "server_error", "The line failed (sandbox)."))
            batch.failed += 1
            continue
        if item.get("url") != batch.endpoint or batch.endpoint not in RUN_ENDPOINTS:
            errors.append(
                _error_line(
                    custom_id,
                    "invalid_url",
                    f"The sandbox runs batch lines of {', '.join(RUN_ENDPOINTS)} only, and each "
                    "line's url must be the batch's endpoint.",
                )
            )
            batch.failed += 1
            continue
        status, answer = _answer(body)
        line = _response_line(custom_id, status, answer)
        if "[sandbox:batch-garbled]" in prompt:
            line = line[: len(line) // 2]
        if status == 200:
            outputs.append(line)
            batch.completed += 1
        else:
            errors.append(line)
            batch.failed += 1
    now = timezone.now()
    if outputs:
        batch.output_file_id = store_file(
            f"{batch.id}_output.jsonl", "batch_output", b"\n".join(outputs) + b"\n"
        ).id
    if errors:
        batch.error_file_id = store_file(
            f"{batch.id}_error.jsonl", "batch_output", b"\n".join(errors) + b"\n"
        ).id
    if expired:
        batch.status, batch.expired_at = "expired", now
    else:
        batch.status, batch.completed_at = "completed", now
    batch.save()


def _answer(body: dict) -> tuple[int, dict]:
    """What /images/generations would answer this body: (status, JSON body)."""
    try:
        image_request = read_image_request(json.dumps(body).encode())
    except InvalidRequest as problem:
        return 400, json.loads(responses.invalid_request_response(problem).content)
    directives = Directives.from_prompt(image_request.prompt)
    if directives.error_status is not None:
        failure = responses.simulated_error_response(directives.error_status)
        return failure.status_code, json.loads(failure.content)
    if directives.refuse:
        failure = responses.refusal_response(responses.new_request_id())
        return failure.status_code, json.loads(failure.content)
    return 200, generations.images_response(image_request, directives)


def _response_line(custom_id: str, status: int, body: dict) -> bytes:
    return json.dumps(
        {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": custom_id,
            "response": {
                "status_code": status,
                "request_id": responses.new_request_id(),
                "body": body,
            },
            "error": None,
        }
    ).encode()


def _error_line(custom_id: str | None, code: str, message: str) -> bytes:
    return json.dumps(
        {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    ).encode()


def cancel(batch: SandboxBatch) -> SandboxBatch:
    if batch.status in OPEN_STATES:
        now = timezone.now()
        SandboxBatch.objects.filter(pk=batch.pk, status__in=OPEN_STATES).update(
            status="cancelled", cancelling_at=now, cancelled_at=now
        )
        batch.refresh_from_db()
    return batch
