"""One bill per call, and the right bill: each case of issue #13 as a test.

Calls go through the real openai SDK to the sandbox or to a scripted provider on a
loopback socket; tasks run in-process, deliveries are captured (see `deliveries`).
"""

from __future__ import annotations

import base64
import csv
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from studio import models, tasks
from studio.billing import Answer, Basis, Billing, decide
from studio.models import Attempt, Budget, GenerationRequest, OutputImage, Status, receipt_name
from studio.pricing import Usage, UsageReading, money, read_usage
from studio.tasks import run_generation, sweep_requests
from tests.conftest import run_until_done
from tests.doubles import (
    Reply,
    ScriptedProvider,
    image_reply,
    png_b64,
    stream_reply,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def deliveries(monkeypatch, settings):
    sent: list[str] = []
    monkeypatch.setattr(
        GenerationRequest, "enqueue", lambda self, countdown=0: sent.append(str(self.id))
    )
    settings.RETRY_BASE_SECONDS = Decimal("0.001")
    settings.RETRY_MAX_SECONDS = Decimal("0.002")
    return sent


@pytest.fixture
def gateway_key(monkeypatch):
    monkeypatch.setenv("GATEWAY_KEY", "k")


def submit(user, route, prompt="poster", **extra) -> GenerationRequest:
    values = {"width": 1024, "height": 1024, "quality": "low", "output_format": "png", **extra}
    return GenerationRequest.submit(created_by=user, route=route, prompt=prompt, **values)


def scripted_route(provider, name="openai-like", **extra):
    return models.Route.objects.create(
        name=name,
        owner="openai",
        base_url=provider.base_url,
        api_key_env="GATEWAY_KEY",
        **extra,
    )


def expire_lease(generation) -> None:
    GenerationRequest.objects.filter(pk=generation.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def ledger_holds(storage: bool = True) -> None:
    call_command("ledger_check", *(["--storage"] if storage else []), stdout=_Sink())


class _Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


# --- Usage in every shape seen in the wild ----------------------------------------------------


GATEWAY_CHAT_USAGE = {
    "prompt_tokens": 22,
    "completion_tokens": 1372,
    "total_tokens": 1394,
    "prompt_tokens_details": {"text_tokens": 22, "image_tokens": 0},
    "completion_tokens_details": {"image_tokens": 1372, "text_tokens": 0},
}


@pytest.mark.parametrize(
    ("raw", "shape", "expected"),
    [
        (
            {
                "input_tokens": 30,
                "output_tokens": 196,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 20},
                "output_tokens_details": {"image_tokens": 190, "text_tokens": 6},
            },
            "image_api",
            Usage(
                input_text_tokens=10,
                input_image_tokens=20,
                output_image_tokens=190,
                output_text_tokens=6,
            ),
        ),
        (
            {"input_tokens": 10, "output_tokens": 196, "total_tokens": 206},
            "image_api_totals",
            Usage(input_text_tokens=10, output_image_tokens=196),
        ),
        (GATEWAY_CHAT_USAGE, "chat", Usage(input_text_tokens=22, output_image_tokens=1372)),
        (
            {"prompt_tokens": 5, "completion_tokens": 50},
            "chat",
            Usage(input_text_tokens=5, output_image_tokens=50),
        ),
        ({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}, "zero", None),
        ({"total_tokens": 1394}, "total_only", None),
        (None, "absent", None),
        ({}, "absent", None),
        ({"tokens": "many"}, "unknown", None),
        ({"input_tokens": "ten", "output_tokens": 5}, "unknown", None),
        ({"input_tokens": -3, "output_tokens": 5}, "unknown", None),
        ([1, 2], "unknown", None),
    ],
)
def test_usage_is_read_in_every_shape_and_says_which(raw, shape, expected):
    reading = read_usage(raw)
    assert (reading.shape, reading.usage) == (shape, expected)
    if expected is None:
        assert reading.problem  # a reason in words, never a crash


def test_responses_usage_without_details_is_read_as_text():
    reading = read_usage({"input_tokens": 12, "output_tokens": 40}, outputs="text")
    assert reading.shape == "responses"
    assert reading.usage == Usage(input_text_tokens=12, output_text_tokens=40)


# --- The billing decision ---------------------------------------------------------------------


PRICED = UsageReading(Usage(input_text_tokens=22, output_image_tokens=1372), "chat")


@pytest.mark.parametrize(
    ("answer", "usage", "billing", "basis", "zero"),
    [
        (Answer.NOT_SENT, None, Billing.NOT_BILLED, Basis.NOT_BILLED, True),
        (Answer.ERROR, None, Billing.NOT_BILLED, Basis.NOT_BILLED, True),
        (Answer.COMPLETE, PRICED, Billing.BILLED, Basis.TOKENS, False),
        (Answer.COMPLETE, read_usage(None), Billing.POSSIBLY_BILLED, Basis.POSSIBLY_BILLED, False),
        (
            Answer.COMPLETE,
            read_usage({"total_tokens": 0}),
            Billing.POSSIBLY_BILLED,
            Basis.POSSIBLY_BILLED,
            False,
        ),
        (Answer.INCOMPLETE, None, Billing.POSSIBLY_BILLED, Basis.POSSIBLY_BILLED, False),
        (Answer.INCOMPLETE, PRICED, Billing.BILLED, Basis.TOKENS, False),
        (Answer.NO_ANSWER, None, Billing.POSSIBLY_BILLED, Basis.POSSIBLY_BILLED, False),
    ],
)
def test_only_an_error_answer_or_a_request_never_sent_is_zero(
    price_sheet, answer, usage, billing, basis, zero
):
    bill = decide(answer, usage=usage, images=1, exposure=Decimal("0.05"), sheet=price_sheet)
    assert (bill.billing, bill.basis) == (billing, basis)
    assert (bill.cost == 0) is zero
    if billing is Billing.POSSIBLY_BILLED:
        assert bill.cost is None and bill.exposure == Decimal("0.05")


# --- $0 where money was spent -----------------------------------------------------------------


def test_a_gateway_reporting_chat_style_usage_is_priced(designer, price_sheet, gateway_key):
    body = {"created": 1, "data": [{"b64_json": png_b64()}], "usage": GATEWAY_CHAT_USAGE}
    with ScriptedProvider(Reply(200, body)) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
    assert generation.status == Status.SUCCEEDED
    [attempt] = generation.attempts.all()
    assert attempt.cost == Decimal("0.04127")
    assert (attempt.cost_basis, attempt.usage_shape) == (Basis.TOKENS, "chat")
    assert attempt.raw_usage == GATEWAY_CHAT_USAGE
    ledger_holds()


def test_a_200_with_zero_usage_is_possibly_billed_not_free(designer, price_sheet, gateway_key):
    zero = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    body = {"created": 1, "data": [{"b64_json": png_b64()}], "usage": zero}
    with ScriptedProvider(Reply(200, body)) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
    # The image arrived and is kept; only its price is unknown.
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
    [attempt] = generation.attempts.all()
    assert (attempt.cost, attempt.cost_basis) == (None, Basis.POSSIBLY_BILLED)
    assert attempt.exposure == generation.estimated_cost > 0
    assert (generation.cost, generation.exposure) == (None, generation.estimated_cost)
    ledger_holds()


@pytest.mark.parametrize("b64", ["string", "%%%not-base64%%%"])
def test_a_200_with_an_unusable_image_and_no_usage_is_possibly_billed_and_not_retried(
    designer, price_sheet, gateway_key, b64
):
    body = {"created": 1, "data": [{"b64_json": b64}]}
    with ScriptedProvider(Reply(200, body), image_reply()) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
        calls = len(provider.received)
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "invalid_output")
    assert calls == 1
    [attempt] = generation.attempts.all()
    assert (attempt.http_status, attempt.cost, attempt.cost_basis) == (
        200,
        None,
        Basis.POSSIBLY_BILLED,
    )
    assert attempt.provider_request_id.startswith("req_double_")
    assert f"up to {money(generation.estimated_cost)}" in generation.failure_message
    ledger_holds()


def test_a_stream_that_ends_without_its_final_image_is_possibly_billed(
    designer, price_sheet, gateway_key
):
    preview = {
        "type": "image_generation.partial_image",
        "b64_json": png_b64(),
        "partial_image_index": 0,
        "created_at": 1,
        "size": "1024x1024",
        "quality": "low",
        "background": "opaque",
        "output_format": "png",
    }
    with ScriptedProvider(stream_reply(preview)) as provider:
        route = scripted_route(provider, supports_streaming=True)
        generation = run_until_done(submit(designer, route, partial_images=1))
        calls = len(provider.received)
    assert calls == 1
    assert generation.status == Status.FAILED
    [attempt] = generation.attempts.all()
    assert (attempt.http_status, attempt.cost_basis) == (200, Basis.POSSIBLY_BILLED)
    assert attempt.provider_request_id.startswith("req_double_")
    # The preview that did arrive is kept, with its row.
    assert generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).count() == 1
    ledger_holds()


def test_a_stream_error_keeps_status_request_id_and_is_never_sent_again(live_sandbox, designer):
    generation = run_until_done(
        submit(
            designer, live_sandbox, "x [sandbox:stream-error] [sandbox:pace=0]", partial_images=2
        )
    )
    [attempt] = generation.attempts.all()
    assert (attempt.http_status, attempt.cost_basis) == (200, Basis.POSSIBLY_BILLED)
    assert attempt.provider_request_id.startswith("req_")
    assert generation.cost is None and generation.exposure == generation.estimated_cost


# --- Responses: usage without details, the model that answered, money in the ledger -----------


def responses_body(usage: dict, tool_usage: dict | None = None, model="gpt-5.4-2026-03-05"):
    body = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "image_generation_call",
                "id": "ig_1",
                "status": "completed",
                "result": png_b64(),
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Here it is.", "annotations": []}],
            },
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    if tool_usage is not None:
        body["tool_usage"] = tool_usage
    return body


TURN_SETTINGS = {
    "width": 1024,
    "height": 1024,
    "quality": "low",
    "output_format": "png",
    "partial_images": 0,
}


def mainline_sheet(model: str, price_sheet) -> None:
    """A price sheet for a mainline model: $2.50 per 1M text in, $15 per 1M text out."""
    models.PriceSheet.objects.create(
        model=model,
        effective_from=price_sheet.effective_from,
        text_input=Decimal("2.50"),
        cached_text_input=Decimal("0.25"),
        image_input=Decimal("0"),
        cached_image_input=Decimal("0"),
        image_output=Decimal("0"),
        text_output=Decimal("15.00"),
    )


def run_turn(designer, route, message: str) -> GenerationRequest:
    conversation = models.Conversation.objects.create(
        owner=designer, title="t", route=route, settings=TURN_SETTINGS
    )
    return run_until_done(conversation.add_turn(designer, message))


def test_a_responses_usage_without_details_keeps_the_image_and_prices_the_tool(
    designer, price_sheet, gateway_key
):
    tool = {
        "image_gen": {
            "input_tokens": 22,
            "output_tokens": 1372,
            "input_tokens_details": {"text_tokens": 22, "image_tokens": 0},
        }
    }
    body = responses_body({"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}, tool)
    with ScriptedProvider(Reply(200, body)) as provider:
        route = scripted_route(provider, supports_assistant=True)
        turn = run_turn(designer, route, 'A poster that says "OPEN DAY"')
    assert turn.status == Status.SUCCEEDED, turn.failure_message
    assert turn.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
    [attempt] = turn.attempts.all()
    assert attempt.image_tool_cost == Decimal("0.04127")
    # The model the response names, not the route's setting; no sheet for it: unpriced.
    assert attempt.mainline_model == "gpt-5.4-2026-03-05"
    assert (attempt.mainline_input_tokens, attempt.mainline_output_tokens) == (40, 12)
    assert attempt.mainline_cost is None and attempt.cost is None
    assert attempt.cost_basis == Basis.UNPRICED
    ledger_holds()


def test_a_mainline_price_sheet_prices_the_whole_turn(designer, price_sheet, gateway_key):
    mainline_sheet("gpt-5.4-2026-03-05", price_sheet)
    tool = {"image_gen": GATEWAY_CHAT_USAGE}
    body = responses_body({"input_tokens": 40, "output_tokens": 12, "total_tokens": 52}, tool)
    with ScriptedProvider(Reply(200, body)) as provider:
        route = scripted_route(provider, supports_assistant=True)
        turn = run_turn(designer, route, "a poster")
    [attempt] = turn.attempts.all()
    mainline = Decimal(40) * Decimal("2.50") / 10**6 + Decimal(12) * Decimal("15.00") / 10**6
    assert attempt.mainline_cost == mainline
    assert attempt.cost == Decimal("0.04127") + mainline
    assert turn.cost == attempt.cost
    ledger_holds()


# --- Billed twice: a paid call is never sent again ----------------------------------------------


def test_the_sweep_never_requeues_a_request_whose_call_succeeded(
    live_sandbox, designer, deliveries
):
    """The reported case: a running request with a succeeded attempt, lease expired."""
    generation = submit(designer, live_sandbox)
    assert generation.claim()
    attempt = Attempt.begin(generation, live_sandbox)
    attempt.record_success(
        usage=Usage(input_text_tokens=10, output_image_tokens=196),
        provider_request_id="req_paid",
        http_status=200,
        started=0.0,
        ended=1.0,
    )
    expire_lease(generation)
    deliveries.clear()
    assert sweep_requests()["stuck_failed"] == 1
    generation.refresh_from_db()
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "storage_failed")
    assert "not sent again" in generation.failure_message
    assert deliveries == []  # nothing went back to the queue
    assert generation.cost == attempt.cost > 0
    ledger_holds()


def test_a_worker_that_loses_its_database_after_the_call_is_finished_from_its_receipt(
    live_sandbox, designer, monkeypatch, deliveries
):
    calls = []
    real_generate = tasks.imagegen.generate

    def counted(*args, **kwargs):
        calls.append(1)
        return real_generate(*args, **kwargs)

    def database_gone(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(tasks.imagegen, "generate", counted)
    monkeypatch.setattr(tasks, "record_kept_call", database_gone)
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)
    generation = submit(designer, live_sandbox, '"PAID ONCE"')
    with pytest.raises(OperationalError):
        run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.RUNNING
    assert default_storage.exists(receipt_name(generation.id, 1))

    monkeypatch.undo()
    monkeypatch.setattr(
        GenerationRequest, "enqueue", lambda self, countdown=0: deliveries.append(str(self.id))
    )
    run_generation(str(generation.id))  # a duplicate delivery: the row is not queued
    expire_lease(generation)
    assert sweep_requests()["stuck_finished"] == 1
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert "finished from the images" in generation.ledger_note
    [attempt] = generation.attempts.all()
    assert attempt.outcome == Attempt.Outcome.SUCCEEDED and attempt.cost > 0
    assert attempt.provider_request_id.startswith("req_")
    [output] = generation.outputs.filter(kind=OutputImage.Kind.FINAL)
    assert output.read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert calls == [1]
    ledger_holds()


def test_a_connection_dropped_once_while_writing_rows_is_retried_without_a_new_call(
    live_sandbox, designer, monkeypatch
):
    real_record = tasks.record_kept_call
    failures = []

    def drops_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(tasks, "record_kept_call", drops_once)
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)
    generation = run_until_done(submit(designer, live_sandbox))
    assert generation.status == Status.SUCCEEDED and failures == [1]
    assert generation.attempts.count() == 1
    assert generation.outputs.count() == 1
    ledger_holds()


def test_storage_down_after_a_paid_call_ends_storage_failed_billed_without_a_path(
    live_sandbox, designer, monkeypatch, settings
):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted", f"{settings.MEDIA_ROOT}/outputs/x")

    monkeypatch.setattr(default_storage, "save", refuse)
    monkeypatch.setattr(models.time, "sleep", lambda seconds: None)
    generation = run_until_done(submit(designer, live_sandbox))
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "storage_failed")
    assert str(settings.MEDIA_ROOT) not in generation.failure_message
    assert "Errno" not in generation.failure_message
    [attempt] = generation.attempts.all()
    assert attempt.cost_basis == Basis.TOKENS and attempt.cost > 0
    assert "Operation not permitted" in attempt.error_message  # for admins
    assert generation.cost == attempt.cost
    monkeypatch.undo()
    ledger_holds()


# --- Leases follow live calls ----------------------------------------------------------------


def test_a_live_stream_extends_its_lease_and_is_never_declared_dead(
    live_sandbox, designer, settings
):
    settings.LEASE_GRACE_SECONDS = 1
    live_sandbox.timeout_seconds = 2
    live_sandbox.save()
    generation = submit(designer, live_sandbox, '"SLOW" [sandbox:pace=0.6]', partial_images=3, n=2)
    worker = threading.Thread(target=run_generation, args=[str(generation.id)])
    worker.start()
    swept = []
    while worker.is_alive():
        swept.append(sweep_requests())
        time.sleep(0.3)
    worker.join()
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.failure_message
    assert not any(summary["stuck_failed"] for summary in swept)
    assert generation.ledger_note == ""


def test_a_call_that_ends_after_the_sweep_gave_it_up_is_reconciled(live_sandbox, designer):
    generation = submit(designer, live_sandbox, '"LATE" [sandbox:latency=2]')
    worker = threading.Thread(target=run_generation, args=[str(generation.id)])
    worker.start()
    deadline = time.monotonic() + 5
    while not Attempt.objects.filter(request=generation).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    expire_lease(generation)
    assert sweep_requests()["stuck_failed"] == 1
    generation.refresh_from_db()
    assert generation.failure_reason == "unknown_outcome"
    worker.join()
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert "gave this request up" in generation.ledger_note
    [attempt] = generation.attempts.all()
    assert attempt.outcome == Attempt.Outcome.SUCCEEDED and attempt.cost_basis == Basis.TOKENS
    assert generation.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
    assert generation.cost == attempt.cost
    ledger_holds()


# --- Timeouts ---------------------------------------------------------------------------------


def test_the_seeded_routes_wait_long_enough_for_two_minute_calls():
    assert models.Route._meta.get_field("timeout_seconds").default >= 240
    assert models.Route._meta.get_field("timeout_retries").default == 0


def test_a_timeout_retry_is_not_made_when_it_would_break_a_budget(
    designer, price_sheet, gateway_key, settings
):
    with ScriptedProvider(image_reply()) as provider:
        route = scripted_route(provider, timeout_seconds=1, timeout_retries=1)
        generation = submit(designer, route)
        Budget.objects.create(user=designer, monthly_limit=Decimal("0.01"))
        # Another call would commit twice the estimate: more than the budget allows.
        assert 2 * generation.estimated_cost > Decimal("0.01") >= generation.estimated_cost
        attempt = Attempt.begin(generation, route)
        generation.claim()
        attempt.record_failure(
            reason="timeout",
            http_status=None,
            error_code="",
            message="slow",
            provider_request_id="",
            started=0.0,
            ended=1.0,
        )
        error = tasks.imagegen.ImageGenError("timeout", "slow", answer=Answer.NO_ANSWER)
        assert tasks.plan_retry(generation, attempt, error) is None
        Budget.objects.all().delete()
        assert tasks.plan_retry(generation, attempt, error) is not None


def test_budgets_count_what_may_have_been_spent(designer, price_sheet, gateway_key):
    with ScriptedProvider(Reply(200, {"created": 1, "data": [{"b64_json": png_b64()}]})) as p:
        generation = run_until_done(submit(designer, scripted_route(p)))
    budget = Budget.objects.create(user=designer, monthly_limit=Decimal("10"))
    assert generation.cost is None
    assert budget.spent_this_month() == generation.exposure == generation.estimated_cost


# --- What people read --------------------------------------------------------------------------


def test_the_request_page_says_possibly_billed_up_to_the_exposure(
    client, designer, price_sheet, gateway_key
):
    with ScriptedProvider(Reply(200, {"created": 1, "data": [{"b64_json": png_b64()}]})) as p:
        generation = run_until_done(submit(designer, scripted_route(p)))
    client.force_login(designer)
    page = client.get(generation.get_absolute_url()).content.decode()
    assert f"possibly billed, up to {money(generation.estimated_cost)}" in page


def test_the_csv_output_url_opens_the_access_checked_file(
    client, admin_user, live_sandbox, designer, roles
):
    generation = run_until_done(submit(designer, live_sandbox))
    client.force_login(admin_user)
    lines = b"".join(
        client.get(reverse("audit:export") + "?start=&end=").streaming_content
    ).decode()
    header, row = lines.splitlines()[:2]
    values = dict(zip(next(csv.reader([header])), next(csv.reader([row])), strict=True))
    assert values["billing"] == "billed" and values["usage_shape"] == "image_api"
    url = values["output_url"]
    assert url.startswith("http://testserver/") and "/media/" not in url
    response = client.get(url.removeprefix("http://testserver"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:4] == b"\x89PNG"
    assert generation.status == Status.SUCCEEDED


# --- ledger_check ------------------------------------------------------------------------------


def test_ledger_check_names_each_violation_and_exits_non_zero(live_sandbox, designer):
    ok = run_until_done(submit(designer, live_sandbox))
    ledger_holds()
    twice = run_until_done(submit(designer, live_sandbox))
    Attempt.begin(twice, live_sandbox).record_success(
        usage=Usage(output_image_tokens=196),
        provider_request_id="req_again",
        http_status=200,
        started=0.0,
        ended=1.0,
    )
    stuck = submit(designer, live_sandbox)
    stuck.claim()
    GenerationRequest.objects.filter(pk=stuck.pk).update(
        lease_expires_at=timezone.now() - timedelta(hours=1)
    )
    Attempt.objects.filter(request=ok).update(cost=Decimal(0))
    default_storage.save(f"outputs/{ok.id}/stray.png", ContentFile(base64.b64decode(png_b64())))
    OutputImage.objects.filter(request=twice).first().file.delete(save=False)
    out = _Sink()
    with pytest.raises(CommandError) as raised:
        call_command("ledger_check", "--storage", stdout=out)
    assert raised.value.returncode == 1
    text = "".join(out.lines)
    assert f"second call: request {twice.id} attempt 2" in text
    assert f"stuck: request {stuck.id}" in text
    assert f"$0 on a 200: request {ok.id}" in text
    assert f"cost: request {ok.id}" in text and f"cost: request {twice.id}" in text
    assert "stray.png" in text and "missing file" in text


def test_the_audit_shows_possibly_billed_spend_and_conversation_money(
    client, admin_user, designer, price_sheet, gateway_key
):
    mainline_sheet("gpt-5.4-2026-03-05", price_sheet)
    no_usage = Reply(200, {"created": 1, "data": [{"b64_json": png_b64()}]})
    turn_body = responses_body(
        {"input_tokens": 40, "output_tokens": 12}, {"image_gen": GATEWAY_CHAT_USAGE}
    )
    with ScriptedProvider(no_usage, Reply(200, turn_body)) as provider:
        route = scripted_route(provider, supports_assistant=True)
        unknown = run_until_done(submit(designer, route))
        run_turn(designer, route, "a poster")
    client.force_login(admin_user)
    page = client.get(reverse("audit:dashboard") + "?start=&end=").content.decode()
    card = page[page.index('data-testid="possibly-billed"') :][:900]
    assert ">1</a>" in card
    assert money(unknown.estimated_cost) in card
    conversations = page[page.index('data-testid="conversation-spend"') :][:600]
    assert "$0.0413" in conversations  # the image tool, 22 text in + 1,372 image out
    assert "40 in / 12 out tokens" in conversations
    export = client.get(reverse("audit:export") + "?start=&end=")
    lines = b"".join(export.streaming_content).decode().splitlines()
    rows = list(csv.DictReader(lines))
    [turn_row] = [row for row in rows if row["mainline_model"]]
    assert turn_row["image_tool_cost_usd"] == "0.041270"
    assert turn_row["mainline_input_tokens"] == "40"
    [unknown_row] = [row for row in rows if row["request_id"] == str(unknown.id)]
    assert unknown_row["billing"] == "possibly_billed"
    assert Decimal(unknown_row["exposure_usd"]) == unknown.estimated_cost


# --- Found by attacking the ledger -----------------------------------------------------------


def completed_event(usage=None, b64=None):
    return {
        "type": "image_generation.completed",
        "b64_json": b64 or png_b64(),
        "created_at": 1,
        "size": "1024x1024",
        "quality": "low",
        "background": "opaque",
        "output_format": "png",
        "usage": usage
        or {
            "input_tokens": 10,
            "output_tokens": 196,
            "total_tokens": 206,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
        },
    }


def streamed(provider_events, designer, **extra):
    with ScriptedProvider(stream_reply(*provider_events)) as provider:
        route = scripted_route(provider, supports_streaming=True)
        generation = run_until_done(submit(designer, route, partial_images=1, **extra))
        return generation, len(provider.received)


def test_a_stream_of_several_images_is_billed_from_their_usages(designer, price_sheet, gateway_key):
    generation, calls = streamed([completed_event(), completed_event()], designer, n=2)
    assert generation.status == Status.SUCCEEDED and calls == 1
    [attempt] = generation.attempts.all()
    assert attempt.cost_basis == Basis.TOKENS and attempt.output_image_tokens == 392
    assert generation.cost == attempt.cost
    ledger_holds()


def test_events_a_stream_does_not_know_are_skipped(designer, price_sheet, gateway_key):
    generation, _ = streamed([{"type": "keepalive"}, completed_event()], designer)
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1


def test_an_error_after_a_completed_image_keeps_the_paid_image(designer, price_sheet, gateway_key):
    error = {
        "type": "error",
        "error": {"type": "server_error", "code": "server_error", "message": "boom"},
    }
    generation, calls = streamed([completed_event(), error], designer, n=2)
    assert calls == 1 and generation.status == Status.SUCCEEDED
    assert generation.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
    assert "broke after 1 of 2" in generation.ledger_note
    [attempt] = generation.attempts.all()
    assert attempt.cost_basis == Basis.TOKENS  # the usage it reported is what it billed
    ledger_holds()


@pytest.mark.parametrize(
    "usage",
    [{"input_tokens": 10, "output_tokens": 3_000_000_000}, {"input_tokens": float("nan")}, "lots"],
)
def test_odd_usage_keeps_the_image_status_and_request_id(designer, price_sheet, gateway_key, usage):
    body = {"created": 1, "data": [{"b64_json": png_b64()}], "usage": usage}
    with ScriptedProvider(Reply(200, body)) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
    assert generation.status == Status.SUCCEEDED
    assert generation.outputs.filter(kind=OutputImage.Kind.FINAL).count() == 1
    [attempt] = generation.attempts.all()
    assert (attempt.http_status, attempt.cost_basis) == (200, Basis.POSSIBLY_BILLED)
    assert attempt.provider_request_id.startswith("req_double_")
    assert attempt.usage_shape == "unknown" and attempt.billing_note
    ledger_holds()


@pytest.mark.parametrize("body", ["null", "[]", "<html>gateway</html>"])
def test_a_200_that_is_not_an_images_response_ends_named(designer, price_sheet, gateway_key, body):
    with ScriptedProvider(Reply(200, body)) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "invalid_output")
    [attempt] = generation.attempts.all()
    assert (attempt.http_status, attempt.cost_basis) == (200, Basis.POSSIBLY_BILLED)
    assert "Unexpected error" not in generation.failure_message


@pytest.mark.parametrize("status", [504, 524, 408])
def test_a_gateway_timeout_is_possibly_billed_and_not_sent_again(
    designer, price_sheet, gateway_key, status
):
    with ScriptedProvider(
        Reply(status, {"error": {"message": "upstream timed out"}}), image_reply()
    ) as provider:
        generation = run_until_done(submit(designer, scripted_route(provider)))
        calls = len(provider.received)
    assert calls == 1
    [attempt] = generation.attempts.all()
    assert (attempt.retry_reason, attempt.http_status) == ("timeout", status)
    assert attempt.cost_basis == Basis.POSSIBLY_BILLED


def test_a_cancel_between_claim_and_call_sends_nothing(
    designer, price_sheet, gateway_key, monkeypatch
):
    real_problem = models.Route.configuration_problem

    def cancel_first(route):
        for generation in GenerationRequest.objects.filter(status=Status.RUNNING):
            generation.cancel(designer)
        return real_problem(route)

    monkeypatch.setattr(models.Route, "configuration_problem", cancel_first)
    with ScriptedProvider(image_reply()) as provider:
        generation = submit(designer, scripted_route(provider))
        run_generation(str(generation.id))
        calls = len(provider.received)
    generation.refresh_from_db()
    assert calls == 0 and generation.status == Status.CANCELLED
    assert not generation.attempts.exists()


def test_a_cancel_during_a_call_that_then_fails_keeps_request_and_attempts_in_step(
    designer, price_sheet, gateway_key, monkeypatch
):
    real = tasks.imagegen.generate

    def cancel_then_call(route, request, **kwargs):
        GenerationRequest.objects.get(pk=request.pk).cancel(designer)
        mid = GenerationRequest.objects.get(pk=request.pk)
        # While the call is out, the request counts up to its estimate, never $0.
        assert mid.cost is None and mid.exposure == mid.estimated_cost
        return real(route, request, **kwargs)

    monkeypatch.setattr(tasks.imagegen, "generate", cancel_then_call)
    bad_with_usage = {
        "created": 1,
        "data": [{"b64_json": "string"}],
        "usage": {"input_tokens": 10, "output_tokens": 196},
    }
    with ScriptedProvider(Reply(200, bad_with_usage)) as provider:
        generation = submit(designer, scripted_route(provider))
        run_generation(str(generation.id))
    generation.refresh_from_db()
    [attempt] = generation.attempts.all()
    assert generation.status == Status.CANCELLED
    assert attempt.cost > 0 and generation.cost == attempt.cost
    ledger_holds()


def test_a_failure_after_the_sweep_gave_up_replaces_the_guess(
    designer, price_sheet, gateway_key, monkeypatch
):
    real = tasks.imagegen.generate

    def swept_then_call(route, request, **kwargs):
        expire_lease(request)
        sweep_requests()
        return real(route, request, **kwargs)

    monkeypatch.setattr(tasks.imagegen, "generate", swept_then_call)
    with ScriptedProvider(Reply(500, {"error": {"message": "down"}})) as provider:
        generation = submit(designer, scripted_route(provider))
        run_generation(str(generation.id))
    generation.refresh_from_db()
    [attempt] = generation.attempts.all()
    assert attempt.cost_basis == Basis.NOT_BILLED
    assert (generation.status, generation.failure_reason) == (Status.FAILED, "provider_5xx")
    assert generation.cost == 0 and generation.exposure is None
    assert "after the sweep had given the request up" in generation.failure_message
    ledger_holds()


def test_a_receipt_storage_refuses_leaves_no_image_behind(live_sandbox, designer, monkeypatch):
    real_save = default_storage.save

    def refuse_receipts(name, *args, **kwargs):
        if "receipt" in name:
            raise OSError("storage is full")
        return real_save(name, *args, **kwargs)

    monkeypatch.setattr(default_storage, "save", refuse_receipts)
    monkeypatch.setattr(models.time, "sleep", lambda seconds: None)
    generation = run_until_done(submit(designer, live_sandbox))
    assert generation.failure_reason == "storage_failed"
    monkeypatch.undo()
    ledger_holds()


def test_the_sweep_settles_the_others_when_one_row_cannot_be_settled(
    live_sandbox, designer, monkeypatch
):
    broken, fine = submit(designer, live_sandbox), submit(designer, live_sandbox)
    for generation in (broken, fine):
        generation.claim()
        expire_lease(generation)
    real = GenerationRequest.resolve_stuck

    def resolve(self):
        if self.pk == broken.pk:
            raise ValueError("a broken receipt")
        return real(self)

    monkeypatch.setattr(GenerationRequest, "resolve_stuck", resolve)
    summary = sweep_requests()
    assert summary["stuck_errors"] == 1 and summary["stuck_requeued"] == 1
    fine.refresh_from_db()
    assert fine.status == Status.QUEUED


def test_a_dated_mainline_snapshot_is_priced_by_the_routes_model_sheet(
    designer, price_sheet, gateway_key
):
    mainline_sheet("gpt-5.4", price_sheet)
    body = responses_body(
        {"input_tokens": 40, "output_tokens": 12}, {"image_gen": GATEWAY_CHAT_USAGE}
    )
    with ScriptedProvider(Reply(200, body)) as provider:
        route = scripted_route(provider, supports_assistant=True, assistant_model="gpt-5.4")
        turn = run_turn(designer, route, "a poster")
    [attempt] = turn.attempts.all()
    assert attempt.mainline_model == "gpt-5.4-2026-03-05"
    assert attempt.mainline_cost is not None and attempt.cost is not None


def test_a_sandbox_turn_without_a_mainline_price_counts_its_image_tool(live_sandbox, designer):
    """Found by a new user: the sandbox's turns were missing from the simulated total."""
    from review import audit

    turn = run_turn(designer, live_sandbox, 'A poster that says "OPEN DAY"')
    [attempt] = turn.attempts.all()
    assert attempt.cost is None and attempt.image_tool_cost > 0  # no sheet for gpt-5.4
    form_filters, form = audit.read_filters({})
    figures = audit.dashboard(form_filters, form.routes)
    assert figures["total"].simulated_cost == attempt.image_tool_cost


def test_every_page_names_a_possibly_billed_request_as_such(
    client, designer, price_sheet, gateway_key, admin_user
):
    """Found by a new user: the request list and the attempt ledger said "unpriced"."""
    with ScriptedProvider(Reply(200, {"created": 1, "data": [{"b64_json": png_b64()}]})) as p:
        generation = run_until_done(submit(designer, scripted_route(p)))
    up_to = f"up to {money(generation.estimated_cost)}"
    client.force_login(designer)
    assert up_to in client.get(reverse("studio:request-list")).content.decode()
    client.force_login(admin_user)
    ledger = client.get(reverse("audit:attempts") + "?start=&end=").content.decode()
    assert f"possibly billed, {up_to}" in ledger
