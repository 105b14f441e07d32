from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling

from studio.forms import GenerationForm
from studio.models import GenerationRequest, OutputImage

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
        GenerationRequest.objects.visible_to(user).select_related("route", "created_by"),
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


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "POST"])
def request_new(request):
    form = GenerationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        generation = GenerationRequest.submit(
            created_by=request.user,
            route=data["route"],
            prompt=data["prompt"],
            width=data["width"],
            height=data["height"],
            quality=data["quality"],
            output_format=data["output_format"],
            output_compression=data["output_compression"],
            background=data["background"],
            n=data["n"],
        )
        return redirect(generation)
    return render(request, "studio/request_new.html", {"form": form})


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
