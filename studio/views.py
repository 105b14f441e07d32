from __future__ import annotations

import time
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling
from PIL import Image

from studio import drift, imagerules, thumbnails
from studio.forms import (
    ComposerForm,
    ConversationForm,
    EditForm,
    GalleryFilter,
    TurnForm,
    initial_for_edit,
    initial_for_frame,
    initial_from_request,
)
from studio.models import (
    Budget,
    BudgetExceeded,
    Conversation,
    GalleryCursor,
    GenerationRequest,
    InputImage,
    OutputImage,
    PromptFrame,
    SubmissionFlood,
    SubmissionKey,
)

DESIGNER_ROLES = ("designer", "admin")


def has_role(user, *roles: str) -> bool:
    return user.is_superuser or user.groups.filter(name__in=roles).exists()


SENT_ONCE_WAIT_SECONDS = 15


def sent_once(view):
    """Let one shown form make its request once (studio.models.SubmissionKey).

    A POST carrying a `submission_key` claims it first (a unique row, so two POSTs racing
    each other cannot both win). When the view redirects (it made something), the key
    remembers where to; when it answers with the form again (an error, a refusal), the key
    is let go so the same form can be corrected and sent. A POST whose key is taken waits
    for the first to finish and is sent where the first went, with a message. Previews,
    GETs and POSTs without a key (scripts, tests) pass straight through."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        key = (request.POST.get("submission_key") or "")[:64] if request.method == "POST" else ""
        if not key or request.POST.get("action") == "preview":
            return view(request, *args, **kwargs)
        try:
            with transaction.atomic():
                claimed = SubmissionKey.objects.create(user=request.user, key=key)
        except IntegrityError:
            return _sent_already(request, key) or view(request, *args, **kwargs)
        try:
            response = view(request, *args, **kwargs)
        except BaseException:
            claimed.delete()
            raise
        target = response.get("HX-Redirect") or (
            response.url if response.status_code in (301, 302, 303) else ""
        )
        if target:
            SubmissionKey.objects.filter(pk=claimed.pk).update(target=target[:300])
        else:
            claimed.delete()
        return response

    return wrapper


def _sent_already(request, key: str):
    """The same form was sent again: show what its first sending made. None when the first
    sending was refused meanwhile (its key let go): this one is then judged on its own."""
    deadline = time.monotonic() + SENT_ONCE_WAIT_SECONDS
    while True:
        first = SubmissionKey.objects.filter(user=request.user, key=key).first()
        if first is None:
            return None
        if first.target or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    messages.info(
        request, "That form was already sent: this is what it made. Nothing was sent twice."
    )
    target = first.target or reverse("studio:request-list")
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)


def role_required(*roles: str):
    """Let in users of one of these groups (superusers always); others get 403."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _get_request_for_user(user, request_id) -> GenerationRequest:
    return get_object_or_404(
        GenerationRequest.objects.visible_to(user).select_related(
            "route", "created_by", "frame_version"
        ),
        pk=request_id,
    )


def _get_output_for_user(user, output_id) -> OutputImage:
    visible = GenerationRequest.objects.visible_to(user)
    return get_object_or_404(OutputImage.objects.filter(request__in=visible), pk=output_id)


@login_required
def home(request):
    if has_role(request.user, *DESIGNER_ROLES):
        return redirect("studio:request-new")
    if has_role(request.user, "reviewer"):
        return redirect("review:queue")
    raise PermissionDenied("Your account has no role yet: ask an admin for one.")


def _composer_context(request, form: ComposerForm) -> dict:
    preview = form.preview()
    if preview.route is not None and not preview.route.is_sandbox:
        preview.budgets = [(b, b.remaining()) for b in Budget.applying_to(request.user)]
    return {"form": form, "preview": preview, "image_rules": imagerules.rules_for_browser()}


def _composer_initial(request) -> dict:
    source = request.GET.get("from")
    if source:
        try:
            return initial_from_request(_get_request_for_user(request.user, source))
        except ValidationError:
            raise Http404("No such request.") from None
    frame = _frame_from(request.GET.get("frame"), PromptFrame.objects.active())
    return initial_for_frame(frame) if frame else {}


def _frame_from(raw: str | None, frames) -> PromptFrame | None:
    """A frame by key (links) or by id (the frame picker)."""
    raw = raw or ""
    # isascii: "²" is a digit to isdigit() but not to int(); and ids are short.
    by_id = raw.isascii() and raw.isdigit() and len(raw) < 19
    return frames.filter(key=raw).first() or (frames.filter(pk=int(raw)).first() if by_id else None)


def _edit_frame_handoff(request, raw: str | None):
    """Edit frames need a source image, so the composer hands them to the edit page."""
    frame = _frame_from(raw, PromptFrame.objects.active())
    if frame is None or frame.operation != PromptFrame.Operation.EDIT:
        return None
    url = f"{reverse('studio:edit-new')}?frame={frame.key}"
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "HEAD", "POST"])
@sent_once
def request_new(request):
    """The composer: frame and slots or a free prompt, settings, route, live estimate."""
    if request.method != "POST":
        chosen = request.GET.get("frame")
    else:  # the no-JavaScript "Use this frame" button previews
        chosen = request.POST.get("frame") if request.POST.get("action") == "preview" else None
    if (handoff := _edit_frame_handoff(request, chosen)) is not None:
        return handoff
    if request.method == "POST":
        form = ComposerForm(request.POST)
        if request.POST.get("action") != "preview" and form.is_valid():
            try:
                generation = form.submit(request.user)
            except BudgetExceeded as refusal:
                form.add_error(None, str(refusal))
            except SubmissionFlood as flood:
                form.add_error(None, str(flood))
                context = _composer_context(request, form)
                return render(request, "studio/request_new.html", context, status=429)
            else:
                return redirect(generation)
    else:
        form = ComposerForm(initial=_composer_initial(request))
    template = "studio/request_new.html"
    if request.htmx and request.method != "POST":
        template += "#composer"
    return render(request, template, _composer_context(request, form))


@role_required(*DESIGNER_ROLES)
@require_POST
def composer_preview(request):
    """The live preview partial: renders what would be sent, creates nothing."""
    form = ComposerForm(request.POST)
    return render(request, "studio/request_new.html#preview", _composer_context(request, form))


def _edit_initial(request) -> dict:
    """Start an edit from an output (?output=), a request (?from=) and/or a frame (?frame=)."""
    output = generation = None
    try:
        if raw := request.GET.get("output"):
            output = _get_output_for_user(request.user, raw)
        if raw := request.GET.get("from"):
            generation = _get_request_for_user(request.user, raw)
    except ValidationError:
        raise Http404("No such output or request.") from None
    if output is None and generation is not None and generation.parent_output_id:
        output = OutputImage.objects.filter(
            request__in=GenerationRequest.objects.visible_to(request.user),
            pk=generation.parent_output_id,
        ).first()
    frame = _frame_from(request.GET.get("frame"), EditForm.frames())
    suggestion = None
    if (raw := request.GET.get("decision")) and raw.isdigit():
        from review.models import Decision

        suggestion = (
            Decision.objects.select_related("output", "request")
            .exclude(region_mask="")
            .filter(
                pk=int(raw),
                request__created_by=request.user,
                output__deleted_at__isnull=True,
            )
            .first()
        )
        if suggestion is None:
            raise Http404("No such suggested edit.")
    return initial_for_edit(frame, output, generation, suggestion)


def _edit_context(request, form: EditForm) -> dict:
    suggestion = form.suggestion
    return {
        **_composer_context(request, form),
        "suggestion": suggestion,
        "suggestion_region_url": reverse(
            "studio:suggested-region", args=[suggestion.request_id, suggestion.pk]
        )
        if suggestion
        else None,
        "source_output": form.source_from_output,
        "max_references": imagerules.MAX_INPUT_IMAGES - 1,
    }


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "HEAD", "POST"])
@sent_once
def edit_new(request):
    """The edit page: a source (uploaded or an output), references, a mask painted or
    uploaded, an edit frame or a free prompt, settings and the estimate."""
    status = 200
    if request.method == "POST" and request.POST.get("action") == "preview":
        # Without JavaScript: show the frame's slots and the estimate; files are not kept.
        form = EditForm(request.POST, user=request.user, for_preview=True)
    elif request.method == "POST":
        form = EditForm(request.POST, request.FILES, user=request.user)
        if form.is_valid():
            try:
                generation = form.submit(request.user)
            except BudgetExceeded as refusal:
                form.add_error(None, str(refusal))
            except SubmissionFlood as flood:
                form.add_error(None, str(flood))
                status = 429
            else:
                return redirect(generation)
    else:
        form = EditForm(initial=_edit_initial(request), user=request.user)
    template = "studio/edit_new.html"
    if request.htmx and request.method != "POST":
        template += "#prompt-fields"
    return render(request, template, _edit_context(request, form), status=status)


@role_required(*DESIGNER_ROLES)
@require_POST
def edit_preview(request):
    """The edit page's live preview: prompt and estimate from the fields, never the files."""
    form = EditForm(request.POST, user=request.user, for_preview=True)
    return render(request, "studio/edit_new.html#preview", _edit_context(request, form))


def _get_suggestion_for_user(user, request_id, decision_id):
    """A change request with a drawn region on one of the user's own requests (404 else)."""
    from review.models import Decision

    generation = _get_request_for_user(user, request_id)
    if generation.created_by_id != user.pk:
        raise Http404("Only the designer of the request opens its suggested edit.")
    return get_object_or_404(
        Decision.objects.select_related("output", "request").exclude(region_mask=""),
        pk=decision_id,
        request=generation,
    )


@role_required(*DESIGNER_ROLES)
@require_safe
def suggested_edit(request, request_id, decision_id):
    """Open the edit page filled in from a reviewer's marked region and reason. Nothing is
    submitted (or billed) until the designer presses Submit there."""
    decision = _get_suggestion_for_user(request.user, request_id, decision_id)
    if decision.output.deleted_at is not None:
        messages.error(request, "The output's file was deleted by retention: it cannot be edited.")
        return redirect(decision.request)
    return redirect(f"{reverse('studio:edit-new')}?decision={decision.pk}")


@role_required(*DESIGNER_ROLES)
@require_safe
def suggested_region(request, request_id, decision_id):
    """The reviewer's drawn region as a PNG mask, for the edit page's painter."""
    decision = _get_suggestion_for_user(request.user, request_id, decision_id)
    try:
        handle = decision.region_mask.open("rb")
    except (FileNotFoundError, OSError):
        raise Http404("The region's file is gone.") from None
    return private_file_response(handle, "image/png", decision.region_mask.name)


@role_required(*DESIGNER_ROLES)
@require_POST
def request_cancel(request, request_id):
    generation = _get_request_for_user(request.user, request_id)
    if generation.created_by_id != request.user.pk and not has_role(request.user, "admin"):
        raise PermissionDenied
    if not generation.cancel(request.user):
        messages.info(
            request, f"The request had already ended ({generation.get_status_display()})."
        )
    return redirect(generation)


@role_required(*DESIGNER_ROLES)
@require_POST
def request_run_again(request, request_id):
    original = _get_request_for_user(request.user, request_id)
    if original.operation == GenerationRequest.Operation.ASSISTANT:
        messages.error(request, "A conversation turn continues in its conversation.")
        return redirect(original)
    try:
        generation = original.resubmit(request.user)
    except SubmissionFlood as flood:
        return HttpResponse(str(flood), status=429, content_type="text/plain")
    except BudgetExceeded as refusal:
        messages.error(request, str(refusal))
        return redirect(original)
    return redirect(generation)


@role_required(*DESIGNER_ROLES)
@require_safe
def request_list(request):
    """My requests: thumbnails (or a table), searched and filtered, newest first, a page at
    a time by cursor (`older`/`newer`), never by OFFSET or a COUNT of everything."""
    filters = GalleryFilter(request.GET)
    view = request.GET.get("view") if request.GET.get("view") in GalleryFilter.VIEWS else "grid"
    requests = filters.apply(
        GenerationRequest.objects.filter(created_by=request.user).select_related(
            "route", "frame_version"
        )
    )
    older, newer = GalleryCursor.parse(request.GET.get("older")), None
    if older is None:
        newer = GalleryCursor.parse(request.GET.get("newer"))
    page, more = requests.keyset_page(settings.REQUESTS_PER_PAGE, older, newer)
    if newer is not None and not more:
        # Back at the newest: read the first page whole, not the few rows left above.
        newer = None
        page, more = requests.keyset_page(settings.REQUESTS_PER_PAGE)
    thumbnails = {}
    for output in OutputImage.objects.filter(
        request__in=[generation.pk for generation in page],
        kind=OutputImage.Kind.FINAL,
        deleted_at__isnull=True,
    ).order_by("request", "index"):
        thumbnails.setdefault(output.request_id, output)
    for generation in page:
        generation.thumbnail = thumbnails.get(generation.pk)
    has_older = more if newer is None else True
    has_newer = (older is not None) or (newer is not None and more)
    context = {
        "filters": filters,
        "view": view,
        "page": page,
        "older_link": "?" + filters.query(view=view, older=GalleryCursor.of(page[-1]))
        if page and has_older
        else None,
        "newer_link": "?" + filters.query(view=view, newer=GalleryCursor.of(page[0]))
        if page and has_newer
        else None,
        "grid_link": "?" + filters.query(view="grid"),
        "table_link": "?" + filters.query(view="table"),
        "filtered": any(filters.data.get(name) for name in filters.fields),
    }
    template = "studio/request_list.html"
    if request.htmx:
        template += "#results"
    return render(request, template, context)


@login_required
@require_safe
@never_cache
def request_detail(request, request_id):
    generation = _get_request_for_user(request.user, request_id)
    context = {
        "generation": generation,
        "can_compose": has_role(request.user, *DESIGNER_ROLES),
        "can_cancel": generation.created_by_id == request.user.pk
        or has_role(request.user, "admin"),
        "now": timezone.now(),
        "attempts": generation.attempts.select_related("route"),
        "outputs": generation.outputs.filter(kind=OutputImage.Kind.FINAL),
        **_preview_context(generation),
        **lineage_context(request.user, generation),
    }
    if request.htmx:
        response = render(request, "studio/request_detail.html#progress", context)
        if generation.is_terminal:
            # Same content, status 286: htmx swaps it in and stops polling.
            return HttpResponseStopPolling(response.content)
        return response
    return render(request, "studio/request_detail.html", context)


def _preview_context(generation: GenerationRequest) -> dict:
    """The streamed previews in arrival order, and the newest to show while the call runs."""
    previews = list(
        generation.outputs.filter(kind=OutputImage.Kind.PARTIAL).order_by("created_at", "index")
    )
    return {"previews": previews, "latest_preview": previews[-1] if previews else None}


@login_required
@require_safe
def input_file(request, input_id):
    visible = GenerationRequest.objects.visible_to(request.user)
    item = get_object_or_404(InputImage.objects.filter(request__in=visible), pk=input_id)
    try:
        handle = item.file.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is gone.") from None
    return private_file_response(handle, item.content_type, item.file.name)


@login_required
@require_safe
def input_download(request, input_id):
    """The input as a file to save, named after its frame and request (as input_file checks)."""
    visible = GenerationRequest.objects.visible_to(request.user)
    item = get_object_or_404(
        InputImage.objects.filter(request__in=visible).select_related(
            "request__frame_version__frame"
        ),
        pk=input_id,
    )
    return _download(item)


@login_required
@require_safe
def output_download(request, output_id):
    """The output as a file to save, named after its frame and request (as output_file checks)."""
    visible = GenerationRequest.objects.visible_to(request.user)
    output = get_object_or_404(
        OutputImage.objects.filter(request__in=visible).select_related(
            "request__frame_version__frame"
        ),
        pk=output_id,
    )
    return _download(output)


@login_required
@require_safe
def output_thumbnail(request, output_id):
    """The gallery's small WebP of an output (access as output_file)."""
    output = _get_output_for_user(request.user, output_id)
    if output.deleted_at is not None:
        raise Http404("Retention deleted this file.")
    try:
        data = thumbnails.thumbnail_bytes(output)
    except (OSError, Image.DecompressionBombError):
        raise Http404("The stored file is gone or cannot be read.") from None
    response = HttpResponse(data, content_type="image/webp")
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _download(item: InputImage | OutputImage) -> FileResponse:
    if getattr(item, "deleted_at", None) is not None:
        raise Http404("Retention deleted this file.")
    try:
        handle = item.file.open("rb")
    except (FileNotFoundError, OSError):
        raise Http404("The stored file is gone.") from None
    response = FileResponse(
        handle, content_type=item.content_type, as_attachment=True, filename=item.download_name
    )
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_safe
def output_drift(request, output_id):
    """The drift heatmap of a masked edit's output, measured again from the stored files."""
    output = _get_output_for_user(request.user, output_id)
    try:
        measured = drift.measure_output(output)
    except OSError:
        raise Http404("A file the heatmap needs is gone or cannot be read.") from None
    if measured is None:
        raise Http404("This output is not from a masked edit.")
    response = HttpResponse(drift.heatmap_png(*measured), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_safe
def output_file(request, output_id):
    output = _get_output_for_user(request.user, output_id)
    try:
        handle = output.file.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is gone.") from None
    return private_file_response(handle, output.content_type, output.file.name)


INLINE_TYPES = {"image/png", "image/jpeg", "image/webp"}


def private_file_response(handle, content_type: str, name: str) -> FileResponse:
    """A stored file for one user: never sniffed, never cached by shared caches, and shown
    inline only when it is an image type the studio itself produced or checked."""
    inline = content_type in INLINE_TYPES
    response = FileResponse(
        handle,
        content_type=content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        filename=name.rsplit("/", 1)[-1],
    )
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def favicon(request):
    """/favicon.ico, which browsers ask for on pages that name no icon (files, the admin)."""
    response = redirect(static("favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response


@require_safe
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


def lineage_context(user, generation: GenerationRequest) -> dict:
    """Inputs, the parent output and the edits made from this request's outputs, as far as
    this user may see them; and what each output is compared with (parent, else source)."""
    visible = GenerationRequest.objects.visible_to(user)
    parent = generation.parent_output
    if parent is not None and not visible.filter(pk=parent.request_id).exists():
        parent = None
    inputs = list(generation.inputs.all()) if generation.is_edit else []
    source = next((item for item in inputs if item.role == InputImage.Role.SOURCE), None)
    before = parent if parent is not None and parent.deleted_at is None else source
    return {
        "inputs": inputs,
        "source_input": source,
        "mask_input": next((item for item in inputs if item.role == InputImage.Role.MASK), None),
        "reference_inputs": [item for item in inputs if item.role == InputImage.Role.REFERENCE],
        "parent": parent,
        "children": generation.edits_of_outputs().filter(pk__in=visible.values("pk")),
        "before": before,
        "before_label": "parent" if before is not None and before is parent else "source",
        "drift_threshold_percent": drift.DRIFT_THRESHOLD * 100,
    }


def _get_conversation_for_user(user, conversation_id) -> Conversation:
    return get_object_or_404(
        Conversation.objects.visible_to(user).select_related("route", "owner"),
        pk=conversation_id,
    )


@role_required(*DESIGNER_ROLES)
@require_safe
def conversation_list(request):
    conversations = Conversation.objects.filter(owner=request.user).select_related("route")
    return render(request, "studio/conversation_list.html", {"conversations": conversations})


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "HEAD", "POST"])
@sent_once
def conversation_new(request):
    """Start multi-turn work with the assistant: settings for every turn, and a first message."""
    form = ConversationForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            conversation, _turn = form.start(request.user)
        except BudgetExceeded as refusal:
            form.add_error(None, str(refusal))
        except SubmissionFlood as flood:
            form.add_error(None, str(flood))
            status = 429  # as on the composer and the edit page
        else:
            return redirect(conversation)
    context = {"form": form, "turn_preview": _turn_preview(form, None)}
    return render(request, "studio/conversation_new.html", context, status=status)


def _conversation_context(request, conversation: Conversation, form=None) -> dict:
    turns = list(conversation.turns.order_by("created_at").prefetch_related("outputs", "attempts"))
    for turn in turns:
        outputs = list(turn.outputs.all())
        turn.final_outputs = [o for o in outputs if o.kind == OutputImage.Kind.FINAL]
        turn.preview_outputs = [o for o in outputs if o.kind == OutputImage.Kind.PARTIAL]
    waiting = any(not turn.is_terminal for turn in turns)
    return {
        "conversation": conversation,
        "turns": turns,
        "waiting": waiting,
        "is_owner": conversation.owner_id == request.user.pk,
        "form": form or TurnForm(),
        "turn_preview": _turn_preview(form or TurnForm(), conversation),
    }


@role_required(*DESIGNER_ROLES)
@require_safe
@never_cache
def conversation_detail(request, conversation_id):
    conversation = _get_conversation_for_user(request.user, conversation_id)
    context = _conversation_context(request, conversation)
    if request.htmx:
        response = render(request, "studio/conversation_detail.html#turns", context)
        if not context["waiting"]:
            return HttpResponseStopPolling(response.content)
        return response
    return render(request, "studio/conversation_detail.html", context)


@role_required(*DESIGNER_ROLES)
@require_POST
def turn_labels(request):
    """The labels a conversation message will make its turn expect, and what its image call
    is estimated at, as the designer types: for a new conversation from the settings on the
    form, for a running one (`conversation`) from its own."""
    conversation = None
    if raw := request.POST.get("conversation"):
        try:
            conversation = _get_conversation_for_user(request.user, raw)
        except ValidationError:
            raise Http404("No such conversation.") from None
    form = TurnForm(request.POST) if conversation else ConversationForm(request.POST)
    return render(request, "studio/_turn_preview.html", _turn_preview(form, conversation))


def _turn_preview(form, conversation: Conversation | None) -> dict:
    if conversation is not None:
        route, settings = conversation.route, conversation.settings
    else:
        route, settings = form.chosen_route(), form.turn_settings()
    return {
        "labels": form.expected_labels(),
        "estimate": form.estimate(route, settings),
        "route": route,
    }


@role_required(*DESIGNER_ROLES)
@require_POST
@sent_once
def conversation_turn(request, conversation_id):
    """The next message; only the owner may speak in a conversation."""
    conversation = _get_conversation_for_user(request.user, conversation_id)
    if conversation.owner_id != request.user.pk:
        raise Http404("No such conversation.")
    form = TurnForm(request.POST)
    status = 200
    if form.is_valid():
        try:
            conversation.add_turn(
                request.user, form.cleaned_data["message"], form.cleaned_data["extra_labels"]
            )
        except ValidationError as refusal:
            form.add_error(None, refusal)
        except BudgetExceeded as refusal:
            form.add_error(None, str(refusal))
        except SubmissionFlood as flood:
            form.add_error(None, str(flood))
            status = 429
        else:
            return redirect(conversation)
    context = _conversation_context(request, conversation, form)
    return render(request, "studio/conversation_detail.html", context, status=status)
