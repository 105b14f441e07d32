"""The Responses API with the image_generation tool: a mainline model that calls gpt-image-2.

`model` is a mainline model (gpt-5.4 ...); the image model belongs in the tool. A response
whose request lists the tool draws one image, a generation or an edit of an input image (or
of the image the conversation already has), then says one short sentence; without the tool
it only says the sentence. Each response's latest image is kept in the database (StoredResponse,
for SANDBOX_RESPONSE_RETENTION_HOURS), so a later turn, served by any sandbox process, can name
it with `previous_response_id` and edit it, as with OpenAI's stored responses.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, JsonResponse

from studio import imagerules, pricing
from studio.sandbox import params, streaming
from studio.sandbox.directives import Directives, strip_directives
from studio.sandbox.edits import draw_edits, input_image_tokens, with_auto_size
from studio.sandbox.generations import (
    Drawing,
    draw_generation,
    encode_b64,
    encode_image,
    usage,
)
from studio.sandbox.models import StoredResponse
from studio.sandbox.params import ImageRequest, InvalidRequest
from studio.sandbox.render import labels_to_draw, partial_versions
from studio.sandbox.uploads import (
    InputImage,
    Mask,
    Upload,
    read_input_images,
    read_mask,
    upload_from_data_url,
)

IMAGE_MODEL_PREFIXES = ("gpt-image", "chatgpt-image", "dall-e")
EXAMPLE_MAINLINE_MODEL = "gpt-5.4"
MESSAGE_ROLES = ("user", "system", "developer", "assistant")
TOOL_ACTIONS = ("generate", "edit", "auto")
# CreateResponse's parameters, from the spec and the SDK. Only the ones that change a
# sandbox answer are read; the rest are accepted and ignored.
KNOWN_PARAMETERS = frozenset(
    (
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "previous_response_id",
        "stream",
        "metadata",
        "access_programs",
        "background",
        "context_management",
        "conversation",
        "include",
        "max_output_tokens",
        "max_tool_calls",
        "moderation",
        "parallel_tool_calls",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "temperature",
        "text",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    )
)
# Inline data-URL images make bodies far larger than Django's form limit (2.5 MB), so the
# body is read with this limit instead; 16 images of up to 50 MB are not a sandbox's job.
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImageTool:
    """The image_generation tool as asked for; `listed` is how the response echoes it."""

    model: str
    size: tuple[int, int] | None
    quality: str
    output_format: str
    output_compression: int
    background: str
    partial_images: int
    action: str
    mask: Upload | None
    listed: dict
    prefix: str


@dataclass(frozen=True)
class Turn:
    """What a later turn needs of a response: its latest image and how long the talk is."""

    image: bytes | None
    context_tokens: int


@dataclass(frozen=True)
class AssistantRequest:
    model: str
    instructions: str | None
    prompt: str
    directive_text: str
    context_tokens: int
    sources: tuple[InputImage, ...]
    mask: Mask | None
    tool: ImageTool | None
    tools: list
    tool_choice: object
    previous_response_id: str | None
    previous: Turn | None
    stream: bool
    metadata: dict


@dataclass(frozen=True)
class Plan:
    """Everything one answer shows, decided before the first byte is sent."""

    response_id: str
    call_id: str
    message_id: str
    created_at: int
    image_request: ImageRequest | None
    draw: Drawing | None
    action: str
    revised_prompt: str
    source_image_tokens: int
    text: str


def remember(response_id: str, turn: Turn) -> None:
    """Keep what a follow-up needs, in the database: the next turn may reach another process."""
    StoredResponse.objects.forget_old()
    StoredResponse.objects.create(
        id=response_id, image=turn.image, context_tokens=turn.context_tokens
    )


def recall(response_id: str) -> Turn | None:
    stored = StoredResponse.objects.live().filter(pk=response_id).first()
    if stored is None:
        return None
    image = bytes(stored.image) if stored.image is not None else None
    return Turn(image=image, context_tokens=stored.context_tokens)


def read_response_request(request: HttpRequest) -> AssistantRequest:
    """Parse and check a CreateResponse body; raise InvalidRequest naming the first bad part."""
    fields = params.read_json_object(_read_body(request))
    for name in fields:
        if name not in KNOWN_PARAMETERS:
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    model = _read_model(fields)
    instructions = fields.get("instructions")
    if instructions is not None:
        params.expect_type(fields, "instructions", str)
    previous_response_id, previous = _read_previous(fields)
    user_texts, other_texts, uploads, history = _read_input(fields.get("input"))
    tools = fields.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise InvalidRequest(
            "Invalid 'tools': expected an array of tool objects.",
            param="tools",
            code="invalid_type",
        )
    tool_choice = fields.get("tool_choice") or "auto"
    tool = None if tool_choice == "none" else _read_image_tool(tools)
    prompt = "\n".join(user_texts)
    # Input images are read (and checked) even without the tool: the model sees them.
    inputs = read_input_images(uploads, param="input") if uploads else []
    sources = _edit_sources(tool, inputs, history, previous)
    mask = None
    if tool is not None and tool.mask is not None and sources:
        mask = read_mask(tool.mask, sources[0], param=tool.prefix + "input_image_mask")
    all_text = [instructions or "", *other_texts, *user_texts]
    return AssistantRequest(
        model=model,
        instructions=instructions,
        prompt=prompt,
        directive_text="\n".join(all_text),
        context_tokens=pricing.estimate_text_tokens("\n".join(all_text))
        + sum(input_image_tokens(item.width, item.height) for item in inputs)
        + (previous.context_tokens if previous else 0),
        sources=sources,
        mask=mask,
        tool=tool,
        tools=[
            tool.listed if tool and item.get("type") == "image_generation" else item
            for item in tools
        ],
        tool_choice=tool_choice,
        previous_response_id=previous_response_id,
        previous=previous,
        stream=params.read_flag(fields, "stream"),
        metadata=fields.get("metadata") if isinstance(fields.get("metadata"), dict) else {},
    )


def answer(request: AssistantRequest, directives: Directives) -> HttpResponse:
    plan = plan_answer(request, directives)
    if request.stream:
        return streaming.event_stream_response(response_events(request, plan, directives))
    output = []
    image = None
    if plan.image_request is not None and plan.draw is not None:
        image = encode_image(plan.image_request, plan.draw(0))
        output.append(image_call_item(plan, encode_b64(image, directives)))
    output.append(message_item(plan, plan.text))
    remember(plan.response_id, _turn(request, plan, image))
    return JsonResponse(
        response_object(
            request,
            plan,
            status="completed",
            output=output,
            usage=response_usage(request, plan),
            tool_usage=tool_usage(plan, partial_images=0),
        )
    )


def plan_answer(request: AssistantRequest, directives: Directives) -> Plan:
    text = strip_directives(request.prompt)
    revised_prompt = text or "An image."
    image_request = draw = None
    action = "generate"
    tool = request.tool
    if tool is not None:
        action = "edit" if request.sources else "generate"
        width, height = tool.size or params.DEFAULT_SIZE
        image_request = ImageRequest(
            prompt=revised_prompt,
            model=tool.model,
            n=1,
            width=width,
            height=height,
            quality=tool.quality,
            output_format=tool.output_format,
            output_compression=tool.output_compression,
            background=tool.background,
            partial_images=tool.partial_images,
            stream=request.stream,
        )
        if request.sources:
            if tool.size is None:
                image_request = with_auto_size(image_request, request.sources[0])
            draw = draw_edits(image_request, request.sources, request.mask, directives)
        else:
            draw = draw_generation(image_request, directives)
    return Plan(
        response_id=f"resp_{uuid.uuid4().hex}",
        call_id=f"ig_{uuid.uuid4().hex}",
        message_id=f"msg_{uuid.uuid4().hex}",
        created_at=int(time.time()),
        image_request=image_request,
        draw=draw,
        action=action,
        revised_prompt=revised_prompt,
        source_image_tokens=sum(input_image_tokens(s.width, s.height) for s in request.sources),
        text=_assistant_text(text, image_request, action),
    )


def response_events(
    request: AssistantRequest, plan: Plan, directives: Directives
) -> Iterator[bytes]:
    """The Responses stream: created, in_progress, the image call with its partial images,
    the message text, then completed (or error and failed, when told to break)."""
    sequence = itertools.count()

    def event(event_type: str, **data: object) -> bytes:
        return streaming.sse(
            event_type, {"type": event_type, **data, "sequence_number": next(sequence)}
        )

    def in_progress(output: list) -> dict:
        return response_object(request, plan, status="in_progress", output=output)

    output: list[dict] = []
    yield event("response.created", response=in_progress(output))
    yield event("response.in_progress", response=in_progress(output))
    image = None
    partials_sent = 0
    if plan.image_request is not None and plan.draw is not None:
        image_request, where = plan.image_request, {"output_index": 0, "item_id": plan.call_id}
        started = {"id": plan.call_id, "type": "image_generation_call", "status": "in_progress"}
        yield event("response.output_item.added", output_index=0, item={**started, "result": None})
        yield event("response.image_generation_call.in_progress", **where)
        yield event("response.image_generation_call.generating", **where)
        pacer = streaming.Pacer(directives)
        final = plan.draw(0)
        for number, preview in enumerate(partial_versions(final, image_request.partial_images)):
            pacer.wait()
            yield event(
                "response.image_generation_call.partial_image",
                **where,
                partial_image_index=number,
                partial_image_b64=encode_b64(encode_image(image_request, preview)),
                size=image_request.size,
                quality=image_request.resolved_quality,
                background="opaque",
                output_format=image_request.output_format,
            )
            partials_sent += 1
            if directives.stream_error:
                break
        if not directives.stream_error:
            pacer.wait()
            image = encode_image(image_request, final)
            yield event("response.image_generation_call.completed", **where)
            output.append(image_call_item(plan, encode_b64(image, directives)))
            yield event("response.output_item.done", output_index=0, item=output[0])
    if directives.stream_error:
        error = {"code": "server_error", "message": streaming.SERVER_ERROR_MESSAGE}
        yield event("error", **error, param=None)
        failed = response_object(request, plan, status="failed", output=output, error=error)
        yield event("response.failed", response=failed)
        return
    yield from _message_events(plan, event, output_index=len(output))
    output.append(message_item(plan, plan.text))
    remember(plan.response_id, _turn(request, plan, image))
    completed = response_object(
        request,
        plan,
        status="completed",
        output=output,
        usage=response_usage(request, plan),
        tool_usage=tool_usage(plan, partial_images=partials_sent),
    )
    yield event("response.completed", response=completed)


def response_object(
    request: AssistantRequest,
    plan: Plan,
    *,
    status: str,
    output: list,
    usage: dict | None = None,
    tool_usage: dict | None = None,
    error: dict | None = None,
) -> dict:
    """A Response as OpenAI returns it. `tool_usage` (the image tool's own tokens) is not in
    the published spec yet; the SDK reads it as Response.tool_usage.image_gen."""
    body = {
        "id": plan.response_id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "background": False,
        "error": error,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": request.model,
        "output": list(output),
        "parallel_tool_calls": True,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": request.tool_choice,
        "tools": request.tools,
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": request.metadata,
    }
    if usage is not None:
        body["usage"] = usage
    if tool_usage is not None:
        body["tool_usage"] = tool_usage
    return body


def image_call_item(plan: Plan, result: str) -> dict:
    image_request = plan.image_request
    assert image_request is not None
    return {
        "id": plan.call_id,
        "type": "image_generation_call",
        "status": "completed",
        "result": result,
        "action": plan.action,
        "background": "opaque",
        "output_format": image_request.output_format,
        "quality": image_request.resolved_quality,
        "revised_prompt": plan.revised_prompt,
        "size": image_request.size,
    }


def message_item(plan: Plan, text: str, *, status: str = "completed") -> dict:
    content = [_output_text(text)] if status == "completed" else []
    return {
        "id": plan.message_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def response_usage(request: AssistantRequest, plan: Plan) -> dict:
    """The mainline model's tokens: it reads the whole conversation and any input image, and
    writes its sentence (and, when it calls the tool, the revised prompt)."""
    input_tokens = request.context_tokens
    output_tokens = pricing.estimate_text_tokens(plan.text)
    if plan.image_request is not None:
        output_tokens += pricing.estimate_text_tokens(plan.revised_prompt)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def tool_usage(plan: Plan, *, partial_images: int) -> dict:
    """The image tool's tokens, billed at the image model's prices, as the Image API counts
    them (the revised prompt as text input, the source image as image input)."""
    if plan.image_request is None:
        image_gen = {
            "input_tokens": 0,
            "input_tokens_details": {"text_tokens": 0, "image_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"image_tokens": 0, "text_tokens": 0},
            "total_tokens": 0,
        }
    else:
        image_gen = usage(
            plan.image_request,
            input_image_tokens=plan.source_image_tokens,
            partial_images=partial_images,
        )
    return {"image_gen": image_gen, "web_search": {"num_requests": 0}}


def _message_events(plan: Plan, event, *, output_index: int) -> Iterator[bytes]:
    where = {"item_id": plan.message_id, "output_index": output_index, "content_index": 0}
    yield event(
        "response.output_item.added",
        output_index=output_index,
        item=message_item(plan, "", status="in_progress"),
    )
    yield event("response.content_part.added", **where, part=_output_text(""))
    words = plan.text.split(" ")
    for number, word in enumerate(words):
        delta = word if number == len(words) - 1 else word + " "
        yield event("response.output_text.delta", **where, delta=delta, logprobs=[])
    yield event("response.output_text.done", **where, text=plan.text, logprobs=[])
    yield event("response.content_part.done", **where, part=_output_text(plan.text))
    yield event(
        "response.output_item.done", output_index=output_index, item=message_item(plan, plan.text)
    )


def _output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _assistant_text(text: str, image_request: ImageRequest | None, action: str) -> str:
    if image_request is None:
        return (
            "This is the sandbox answering in text only: add the image_generation tool to "
            "the request to get an image."
        )
    labels = labels_to_draw(text)
    what = "Here is the edited image" if action == "edit" else "Here is the image"
    if labels:
        shown = ", ".join(f'"{label}"' for label in labels)
        return f"{what}, {image_request.size}, with the text {shown}."
    return f"{what}, {image_request.size}."


def _turn(request: AssistantRequest, plan: Plan, image: bytes | None) -> Turn:
    if image is None and request.previous is not None:
        image = request.previous.image  # a text-only turn keeps the conversation's image
    usage_now = response_usage(request, plan)
    return Turn(image=image, context_tokens=usage_now["total_tokens"])


def _edit_sources(
    tool: ImageTool | None,
    inputs: list[InputImage],
    history: Upload | None,
    previous: Turn | None,
) -> tuple[InputImage, ...]:
    """The images the tool edits: this turn's input images, else the conversation's latest
    image (an image_generation_call passed back in the input, or the previous response's)."""
    if tool is None:
        return ()
    sources: list[InputImage] = inputs
    if not sources and tool.action != "generate":
        if history is None and previous is not None and previous.image is not None:
            history = Upload.from_bytes(previous.image)
        if history is not None:
            sources = read_input_images([history], param="input")
    if tool.action == "edit" and not sources:
        raise InvalidRequest(
            "The image_generation tool was asked to edit, but there is no image to edit: send "
            "an input_image or continue from a response that made one.",
            param=tool.prefix + "action",
            code="invalid_value",
        )
    return tuple(sources)


def _read_body(request: HttpRequest) -> bytes:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise InvalidRequest(
            f"The request body is larger than the sandbox accepts ({MAX_BODY_BYTES:,} bytes).",
            param=None,
            code="request_too_large",
        )
    return request.read(MAX_BODY_BYTES + 1)


def _read_model(fields: dict) -> str:
    if fields.get("model") is None:
        raise InvalidRequest(
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    model = params.expect_type(fields, "model", str)
    if model.lower().startswith(IMAGE_MODEL_PREFIXES):
        raise InvalidRequest(
            f"The model '{model}' is an image model and cannot be the 'model' of a response. "
            f"Put a mainline model such as {EXAMPLE_MAINLINE_MODEL} in 'model' and the image "
            f'model in the image_generation tool: "tools": [{{"type": "image_generation", '
            f'"model": "{model}"}}].',
            param="model",
            code="unsupported_model",
        )
    if not model.strip():
        raise InvalidRequest("Invalid 'model': empty string.", param="model", code="empty_string")
    return model


def _read_previous(fields: dict) -> tuple[str | None, Turn | None]:
    if fields.get("previous_response_id") is None:
        return None, None
    response_id = params.expect_type(fields, "previous_response_id", str)
    previous = recall(response_id)
    if previous is None:
        raise InvalidRequest(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return response_id, previous


def _read_input(value: object) -> tuple[list[str], list[str], list[Upload], Upload | None]:
    """User text, other text, user images, and the latest image_generation_call result."""
    if value is None:
        return [], [], [], None
    if isinstance(value, str):
        return [value], [], [], None
    if not isinstance(value, list):
        raise InvalidRequest(
            f"Invalid type for 'input': expected a string or an array of input items, but got "
            f"{params.json_type(value)} instead.",
            param="input",
            code="invalid_type",
        )
    user_texts: list[str] = []
    other_texts: list[str] = []
    uploads: list[Upload] = []
    history: Upload | None = None
    for number, item in enumerate(value):
        where = f"input[{number}]"
        if not isinstance(item, dict):
            raise InvalidRequest(
                f"Invalid type for '{where}': expected an object.", param=where, code="invalid_type"
            )
        item_type = item.get("type", "message")
        if item_type == "image_generation_call" and isinstance(item.get("result"), str):
            history = _image_from_base64(item["result"], param=f"{where}.result")
            continue
        if item_type != "message":
            continue  # other items (reasoning, tool outputs ...) change nothing here
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise InvalidRequest(
                f"Invalid value: '{role}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in MESSAGE_ROLES)
                + ".",
                param=f"{where}.role",
                code="invalid_value",
            )
        texts = user_texts if role == "user" else other_texts
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        if not isinstance(content, list):
            raise InvalidRequest(
                f"Invalid type for '{where}.content': expected a string or an array.",
                param=f"{where}.content",
                code="invalid_type",
            )
        for part_number, part in enumerate(content):
            part_where = f"{where}.content[{part_number}]"
            part_type = part.get("type") if isinstance(part, dict) else None
            if part_type in ("input_text", "output_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part_type == "input_image":
                if role == "user":
                    uploads.append(
                        upload_from_data_url(part.get("image_url"), param=f"{part_where}.image_url")
                    )
            elif part_type not in ("refusal", "input_file"):
                raise InvalidRequest(
                    f"Invalid content part at '{part_where}': expected input_text or input_image.",
                    param=part_where,
                    code="invalid_value",
                )
    return user_texts, other_texts, uploads, history


def _read_image_tool(tools: list) -> ImageTool | None:
    for number, tool in enumerate(tools):
        if tool.get("type") == "image_generation":
            return _image_tool(tool, prefix=f"tools[{number}].")
    return None


def _image_tool(tool: dict, *, prefix: str) -> ImageTool:
    model = params.read_choice(tool, "model", params.MODELS, params.DEFAULT_MODEL, prefix=prefix)
    size = params.read_size_value(tool.get("size"), param=prefix + "size")
    quality = params.read_choice(tool, "quality", imagerules.QUALITIES, "auto", prefix=prefix)
    output_format = params.read_choice(
        tool, "output_format", imagerules.OUTPUT_FORMATS, "png", prefix=prefix
    )
    output_compression = params.read_integer(
        tool,
        "output_compression",
        params.DEFAULT_COMPRESSION,
        params.MIN_COMPRESSION,
        params.MAX_COMPRESSION,
        prefix=prefix,
    )
    background = params.read_background(tool, prefix=prefix)
    partial_images = params.read_integer(
        tool,
        "partial_images",
        params.MIN_PARTIAL_IMAGES,
        params.MIN_PARTIAL_IMAGES,
        params.MAX_PARTIAL_IMAGES,
        prefix=prefix,
    )
    params.refuse_input_fidelity(tool, model, prefix=prefix)
    moderation = params.read_choice(tool, "moderation", params.MODERATIONS, "auto", prefix=prefix)
    action = params.read_choice(tool, "action", TOOL_ACTIONS, "auto", prefix=prefix)
    mask = None
    mask_field = tool.get("input_image_mask")
    if mask_field is not None:
        if not isinstance(mask_field, dict) or "image_url" not in mask_field:
            raise InvalidRequest(
                f"Invalid '{prefix}input_image_mask': the sandbox needs an image_url holding "
                "a base64 data URL.",
                param=prefix + "input_image_mask",
                code="invalid_value",
            )
        mask = upload_from_data_url(
            mask_field["image_url"], param=prefix + "input_image_mask.image_url"
        )
    listed = {
        **tool,
        "type": "image_generation",
        "model": model,
        "size": tool.get("size") or "auto",
        "quality": quality,
        "output_format": output_format,
        "output_compression": output_compression,
        "background": background,
        "moderation": moderation,
        "partial_images": partial_images,
    }
    return ImageTool(
        model=model,
        size=size,
        quality=quality,
        output_format=output_format,
        output_compression=output_compression,
        background=background,
        partial_images=partial_images,
        action=action,
        mask=mask,
        listed=listed,
        prefix=prefix,
    )


def _image_from_base64(data: str, *, param: str) -> Upload:
    try:
        return Upload.from_bytes(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"Invalid '{param}': expected base64 image data.", param=param, code="invalid_value"
        ) from None
