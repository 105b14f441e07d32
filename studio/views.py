from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from studio.forms import ComposerForm, initial_for_frame, initial_from_request
from studio.models import Budget, BudgetExceeded, GenerationRequest, OutputImage, PromptFrame

DESIGNER_ROLES = ("designer", "admin")


def has_role(user, *roles: str) -> bool:
    return user.is_superuser or user.groups.filter(name__in=roles).exists()


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
    return redirect("studio:request-list")


def _composer_context(request, form: ComposerForm) -> dict:
    preview = form.preview()
    if preview.route is not None and not preview.route.is_sandbox:
        preview.budgets = [(b, b.remaining()) for b in Budget.applying_to(request.user)]
    return {"form": form, "preview": preview}


def _composer_initial(request) -> dict:
    source = request.GET.get("from")
    if source:
        try:
            return initial_from_request(_get_request_for_user(request.user, source))
        except ValidationError:
            raise Http404("No such request.") from None
    # A frame by key (links) or by id (the frame picker).
    raw, frames = request.GET.get("frame") or "", PromptFrame.objects.active()
    frame = frames.filter(key=raw).first() or (
        frames.filter(pk=int(raw)).first() if raw.isdigit() else None
    )
    return initial_for_frame(frame) if frame else {}


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "POST"])
def request_new(request):
    """The composer: frame and slots or a free prompt, settings, route, live estimate."""
    if request.method == "POST":
        form = ComposerForm(request.POST)
        if request.POST.get("action") != "preview" and form.is_valid():
            try:
                generation = form.submit(request.user)
            except BudgetExceeded as refusal:
                form.add_error(None, str(refusal))
            else:
                return redirect(generation)
    else:
        form = ComposerForm(initial=_composer_initial(request))
    template = "studio/request_new.html"
    if request.htmx and request.method == "GET":
        template += "#composer"
    return render(request, template, _composer_context(request, form))


@role_required(*DESIGNER_ROLES)
@require_POST
def composer_preview(request):
    """The live preview partial: renders what would be sent, creates nothing."""
    form = ComposerForm(request.POST)
    return render(request, "studio/request_new.html#preview", _composer_context(request, form))


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
    try:
        generation = original.resubmit(request.user)
    except BudgetExceeded as refusal:
        messages.error(request, str(refusal))
        return redirect(original)
    return redirect(generation)


@login_required
@require_GET
def request_list(request):
    requests = (
        GenerationRequest.objects.filter(created_by=request.user)
        .select_related("route")
        .newest_first()
    )
    page = Paginator(requests, settings.REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "studio/request_list.html", {"page": page})


@login_required
@require_GET
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
    }
    if request.htmx:
        response = render(request, "studio/request_detail.html#progress", context)
        if generation.is_terminal:
            # Same content, status 286: htmx swaps it in and stops polling.
            return HttpResponseStopPolling(response.content)
        return response
    return render(request, "studio/request_detail.html", context)


@login_required
@require_GET
def output_file(request, output_id):
    output = _get_output_for_user(request.user, output_id)
    try:
        handle = output.file.open("rb")
    except FileNotFoundError:
        raise Http404("The stored file is gone.") from None
    response = FileResponse(handle, content_type=output.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")
