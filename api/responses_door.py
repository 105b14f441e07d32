"""`POST /v1/responses` with the image_generation tool, as a studio conversation.

A call without `previous_response_id` starts a conversation (the conversation form's own
checks: a route that serves the Responses API, the tool's size, quality and format); one
with it adds a turn to the caller's conversation whose last response that was. The turn is
an ordinary request (budgets, limit, ledger, review) and the answer is OpenAI's Response
object with an `image_generation_call` (the image, base64) and the assistant's message.
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from api.door import (
    DoorError,
    check_fields,
    failure,
    invalid,
    read_json,
    route_for,
    user_for,
)
from api.waiting import in_database, wait_for_end
from studio.forms import ConversationForm, TurnForm
from studio.models import (
    DEFAULT_MODEL,
    BudgetExceeded,
    Conversation,
    GenerationRequest,
    OutputImage,
    Status,
    SubmissionFlood,
    is_image_model,
)
from studio.sandbox.responses import error_response

PARAMETERS = frozenset(
    (
        "model",
        "input",
        "tools",
        "previous_response_id",
        "stream",
        "tool_choice",
        "user",
        "store",
        "metadata",
        "route",
    )
)
TOOL_PARAMETERS = frozenset(("type", "model", "size", "quality", "output_format"))


def message_text(raw) -> str:
    """The user's text from `input`: a string, or user messages with text parts."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list) or not raw:
        raise invalid("'input' is a string or a list of user messages.", "input", "invalid_type")
    texts = []
    for item in raw:
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("role", "user") != "user":
            raise invalid("The door takes user messages in 'input'.", "input")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content if isinstance(content, list) else [None]:
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise invalid(
                    "Only text ('input_text') is taken in 'input'; images go to /v1/images/edits.",
                    "input",
                )
            texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def image_tool(tools) -> dict:
    if not isinstance(tools, list) or len(tools) != 1 or not isinstance(tools[0], dict):
        raise invalid("Send 'tools' with one image_generation tool.", "tools")
    tool = tools[0]
    if tool.get("type") != "image_generation":
        raise invalid("The door serves the image_generation tool only.", "tools")
    unknown = sorted(set(tool) - TOOL_PARAMETERS)
    if unknown:
        raise invalid(
            f"Unknown parameter: 'tools[0].{unknown[0]}'.",
            f"tools[0].{unknown[0]}",
            "unknown_parameter",
        )
    if tool.get("model", DEFAULT_MODEL) != DEFAULT_MODEL:
        raise invalid(f"The image tool runs {DEFAULT_MODEL}.", "tools[0].model")
    return tool


def start_or_continue(request: HttpRequest) -> GenerationRequest:
    user = user_for(request)
    body = read_json(request)
    tools = body.pop("tools", None)
    raw_input = body.pop("input", None)
    values = check_fields(body, PARAMETERS)
    if str(values.get("stream", "false")).lower() not in ("false", "0"):
        raise invalid(
            "Streaming is not offered on /v1/responses yet.", "stream", "unsupported_value"
        )
    if is_image_model(values.get("model", "")):
        raise invalid(
            f"{values['model']} is an image model: name a mainline model; the "
            "image model runs in the image_generation tool.",
            "model",
        )
    message = message_text(raw_input)
    tool = image_tool(tools)
    previous = values.get("previous_response_id")
    try:
        if previous:
            conversation = Conversation.objects.filter(
                owner=user, last_response_id=previous
            ).first()
            if conversation is None:
                raise invalid(
                    f"Previous response with id '{previous[:100]}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                )
            form = TurnForm({"message": message, "extra_labels": ""})
            if not form.is_valid():
                raise problems(form)
            return conversation.add_turn(user, form.cleaned_data["message"])
        form = ConversationForm(
            {
                "title": message[:200] or "API conversation",
                "route": route_for(values.get("route")).pk,
                "size": tool.get("size", "1024x1024")
                if tool.get("size") != "auto"
                else "1024x1024",
                "quality": tool.get("quality", "low") if tool.get("quality") != "auto" else "high",
                "output_format": tool.get("output_format", "png"),
                "partial_images": "0",
                "message": message,
                "extra_labels": "",
            }
        )
        if not form.is_valid():
            raise problems(form)
        return form.start(user)[1]
    except ValidationError as refusal:  # the last turn is still being answered
        raise invalid(" ".join(refusal.messages), "previous_response_id") from None
    except SubmissionFlood as flood:
        raise DoorError(
            429,
            str(flood),
            code="rate_limit_exceeded",
            error_type="requests",
            headers={"Retry-After": "60"},
        ) from None
    except BudgetExceeded as refusal:
        raise DoorError(
            402, str(refusal), code="budget_exceeded", error_type="insufficient_quota"
        ) from None


FIELD_PARAMS = {
    "message": "input",
    "size": "tools[0].size",
    "quality": "tools[0].quality",
    "output_format": "tools[0].output_format",
    "route": "route",
    "title": "input",
}


def problems(form) -> DoorError:
    parts, first = [], None
    for name, messages in form.errors.items():
        param = FIELD_PARAMS.get(name, None if name == "__all__" else name)
        first = first or param
        parts += [f"{param}: {m}" if param else m for m in messages]
    return invalid(" ".join(parts), first)


def response_body(turn: GenerationRequest) -> dict:
    turn.refresh_from_db()
    outputs = turn.outputs.filter(kind=OutputImage.Kind.FINAL).order_by("index")
    output = [
        {
            "type": "image_generation_call",
            "id": f"ig_{item.id.hex}",
            "status": "completed",
            "result": base64.b64encode(item.read()).decode(),
            "size": turn.size,
            "quality": turn.quality,
            "output_format": turn.output_format,
        }
        for item in outputs
    ]
    output.append(
        {
            "type": "message",
            "id": f"msg_{turn.id.hex}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": turn.assistant_text, "annotations": []}],
        }
    )
    return {
        "id": turn.response_id,
        "object": "response",
        "created_at": int(turn.created_at.timestamp()),
        "status": "completed",
        "model": turn.route.assistant_model,
        "output": output,
        "previous_response_id": turn.previous_response_id or None,
        "tools": [
            {
                "type": "image_generation",
                "size": turn.size,
                "quality": turn.quality,
                "output_format": turn.output_format,
            }
        ],
        "usage": {
            "input_tokens": turn.input_tokens or 0,
            "output_tokens": turn.output_tokens or 0,
            "total_tokens": (turn.input_tokens or 0) + (turn.output_tokens or 0),
        },
    }


def answer(turn: GenerationRequest, waited: bool) -> JsonResponse:
    turn.refresh_from_db()
    if not waited or not turn.is_terminal:
        response = DoorError(
            504,
            f"The studio's turn {turn.id} is still running; it goes on.",
            error_type="server_error",
            code="timeout",
            headers={"x-should-retry": "false"},
        ).response()
    elif turn.status == Status.SUCCEEDED:
        response = JsonResponse(response_body(turn))
    else:
        response = failure(turn).response()
    response["x-request-id"] = str(turn.id)
    return response


@csrf_exempt
async def responses(request: HttpRequest) -> JsonResponse:
    """OpenAI's `POST /responses` with the image_generation tool, answered when done."""
    if request.method != "POST":
        response = error_response(405, f"Invalid method for URL ({request.path}): use POST.")
        response["Allow"] = "POST"
        return response
    try:
        turn = await in_database(start_or_continue, request)
    except DoorError as error:
        return error.response()
    waited = await wait_for_end(turn.id, settings.OPENAI_DOOR_WAIT_SECONDS)
    return await in_database(answer, turn, waited)
