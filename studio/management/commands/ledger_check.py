"""`manage.py ledger_check [--storage]`: prove the ledger's promises on a live database.

Lists every violation and exits 1 when there is any, 0 when there is none:

- a second call after a billed one: a request with an attempt after one that was billed,
  or after one that was possibly billed (a timeout retry the route allowed aside);
- a request still running past its lease by more than two sweep intervals (the sweep
  should have settled it);
- an attempt priced $0 on a 200 answer (only an error answer is free);
- a finished request whose cost differs from its attempts' (or is known while one of
  theirs is not);
- with --storage: files under outputs/ and inputs/ without a row, and rows (not deleted by
  retention) whose file is missing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from studio.billing import billing_of, may_send_again
from studio.models import (
    TERMINAL_STATUSES,
    Attempt,
    GenerationRequest,
    InputImage,
    OutputImage,
    Status,
    receipt_name,
)


def second_calls() -> list[str]:
    """Attempts sent although an earlier attempt of the same request may have been billed
    (studio.billing.may_send_again, the rule the worker's retries follow)."""
    found = []
    by_request = defaultdict(list)
    rows = Attempt.objects.order_by("request_id", "number").values_list(
        "request_id", "number", "cost_basis", "retry_reason", "route__timeout_retries"
    )
    for request_id, number, basis, reason, timeout_retries in rows:
        by_request[request_id].append((number, basis, reason, timeout_retries))
    for request_id, attempts in by_request.items():
        for index in range(1, len(attempts)):
            earlier = [(basis, reason) for _, basis, reason, _ in attempts[:index]]
            if not may_send_again(earlier, attempts[index - 1][3]):
                number, basis = attempts[index - 1][0], attempts[index - 1][1]
                state = billing_of(basis)
                found.append(
                    f"second call: request {request_id} attempt {attempts[index][0]} was sent "
                    f"after attempt {number} was {state.value if state else 'in flight'}"
                )
                break
    return found


def running_past_lease(now) -> list[str]:
    overdue = now - timedelta(seconds=2 * settings.SWEEP_INTERVAL_SECONDS)
    return [
        f"stuck: request {pk} is running, its lease ended at {lease.isoformat()}"
        for pk, lease in GenerationRequest.objects.filter(
            status=Status.RUNNING, lease_expires_at__lt=overdue
        ).values_list("pk", "lease_expires_at")
    ]


def free_answers() -> list[str]:
    return [
        f"$0 on a 200: request {request_id} attempt {number} ({basis})"
        for request_id, number, basis in Attempt.objects.filter(
            http_status=200, cost=Decimal(0)
        ).values_list("request_id", "number", "cost_basis")
    ]


def costs_that_do_not_add_up() -> list[str]:
    found = []
    attempts = defaultdict(list)
    for request_id, cost in Attempt.objects.values_list("request_id", "cost"):
        attempts[request_id].append(cost)
    for pk, cost in GenerationRequest.objects.filter(status__in=TERMINAL_STATUSES).values_list(
        "pk", "cost"
    ):
        costs = attempts.get(pk, [])
        expected = None if any(c is None for c in costs) else sum(costs, Decimal(0))
        if not costs and cost in (None, Decimal(0)):
            continue
        if cost != expected:
            found.append(f"cost: request {pk} records {cost} but its attempts add up to {expected}")
    return found


def _walk(folder: str):
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{folder}/{name}"
    for name in folders:
        yield from _walk(f"{folder}/{name}")


def storage_mismatches() -> list[str]:
    """Files without rows and rows without files, through the storage API (local or S3)."""
    found = []
    known = set()
    for model in (OutputImage, InputImage):
        rows = model.objects.all()
        if model is OutputImage:
            rows = rows.filter(deleted_at__isnull=True)
        for pk, name in rows.values_list("pk", "file"):
            known.add(name)
            if not default_storage.exists(name):
                found.append(f"missing file: {model.__name__} {pk} points at {name}")
    receipts = {
        receipt_name(request_id, number)
        for request_id, number in Attempt.objects.values_list("request_id", "number")
    }
    retained = set(
        OutputImage.objects.filter(deleted_at__isnull=False).values_list("file", flat=True)
    )
    for folder in ("outputs", "inputs"):
        for name in _walk(folder):
            if name not in known and name not in receipts and name not in retained:
                found.append(f"file without a row: {name}")
    return found


class Command(BaseCommand):
    help = "Check the ledger: no second paid call, nothing stuck, no $0 on a 200, costs add up."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--storage",
            action="store_true",
            help="Also walk the storage for files without rows and rows without files.",
        )

    def handle(self, *args, storage: bool = False, **options) -> None:
        violations = [
            *second_calls(),
            *running_past_lease(timezone.now()),
            *free_answers(),
            *costs_that_do_not_add_up(),
        ]
        if storage:
            violations += storage_mismatches()
        for line in violations:
            self.stdout.write(line)
        if violations:
            raise CommandError(f"{len(violations)} ledger violation(s).", returncode=1)
        self.stdout.write(self.style.SUCCESS("The ledger holds: no violations."))
