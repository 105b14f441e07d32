"""Check a multipart CreateImageEditRequest, and draw the edit it asks for."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from PIL import Image

from studio import imagerules, pricing
from studio.sandbox import params
from studio.sandbox.directives import Directives, strip_directives
from studio.sandbox.generations import Drawing, picture_for
from studio.sandbox.params import ImageRequest, InvalidRequest
from studio.sandbox.render import EditPicture, draw_edit, labels_to_draw
from studio.sandbox.uploads import (
    InputImage,
    Mask,
    Upload,
    check_mime_type,
    read_input_images,
    read_mask,
)

IMAGE_FIELDS = ("image", "image[]")
MASK_FIELD = "mask"

# The studio estimates edits with the formula the sandbox bills by: one source, like output tokens.
input_image_tokens = pricing.estimate_input_image_tokens


@dataclass(frozen=True)
class EditRequest:
    image: ImageRequest
    inputs: tuple[InputImage, ...]
    mask: Mask | None

    @property
    def input_image_tokens(self) -> int:
        return sum(input_image_tokens(item.width, item.height) for item in self.inputs)


def read_edit_request(request: HttpRequest) -> EditRequest:
    """Parse and check a multipart edit; raise InvalidRequest naming the first bad part."""
    content_type = request.content_type or ""
    if content_type != "multipart/form-data":
        raise InvalidRequest(
            f"Invalid Content-Type header ({content_type or 'none'}), expected "
            "multipart/form-data.",
            param=None,
            code="invalid_content_type",
        )
    try:
        form, files = request.POST, request.FILES
    except (MultiPartParserError, SuspiciousOperation) as problem:  # too many parts, too big
        raise InvalidRequest(
            f"We could not parse the multipart body of your request ({problem}).",
            param=None,
            code=None,
        ) from None
    for name in (*IMAGE_FIELDS, MASK_FIELD):
        if name in form:
            raise InvalidRequest(
                f"Invalid type for '{name.rstrip('[]')}': expected a file, but got a string "
                "instead.",
                param=name.rstrip("[]"),
                code="invalid_type",
            )
    for name in files:
        if name not in (*IMAGE_FIELDS, MASK_FIELD):
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    fields = params.form_fields(form.lists())
    image_request = params.image_request_from_fields(fields, params.EDIT_PARAMETERS)
    images = [file for name in IMAGE_FIELDS for file in files.getlist(name)]
    masks = files.getlist(MASK_FIELD)
    if len(masks) > 1:
        raise InvalidRequest(
            "Invalid 'mask': expected one file.", param=MASK_FIELD, code="invalid_value"
        )
    for file in images[: imagerules.MAX_INPUT_IMAGES]:
        check_mime_type(file.content_type, param="image")
    if masks:
        check_mime_type(masks[0].content_type, param=MASK_FIELD)
    inputs = read_input_images([Upload(file, file.size) for file in images])
    mask = read_mask(Upload(masks[0], masks[0].size), inputs[0]) if masks else None
    if params.asks_for_auto_size(fields):
        image_request = with_auto_size(image_request, inputs[0])
    return EditRequest(image=image_request, inputs=tuple(inputs), mask=mask)


def with_auto_size(image_request: ImageRequest, first: InputImage) -> ImageRequest:
    """Size "auto": the first image's size when that is a legal output size, else 1024x1024."""
    if imagerules.size_problems(first.width, first.height):
        width, height = params.DEFAULT_SIZE
    else:
        width, height = first.width, first.height
    return replace(image_request, width=width, height=height)


def draw_edits(
    image_request: ImageRequest,
    inputs: tuple[InputImage, ...],
    mask: Mask | None,
    directives: Directives,
) -> Drawing:
    text = strip_directives(image_request.prompt)
    labels = tuple(labels_to_draw(text, typo=directives.typo))

    def draw(index: int) -> Image.Image:
        return draw_edit(
            EditPicture(
                picture=picture_for(image_request, text, labels, index),
                source=inputs[0].pixels,
                editable=mask.editable if mask else None,
                references=tuple(item.pixels for item in inputs[1:]),
                ignore_mask=directives.ignore_mask,
            )
        )

    return draw
