from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from campaigns import delivery
from campaigns.forms import PREVIEW_PROMPTS, CampaignForm
from campaigns.models import Campaign, launch
from studio.models import BudgetExceeded, OutputImage, SubmissionFlood
from studio.views import DESIGNER_ROLES, has_role, role_required

CONTACT_SHEET_PAGE = 48


def _get_campaign_for_user(user, campaign_id) -> Campaign:
    """Designers see their own campaigns; reviewers and admins see everyone's."""
    campaigns = Campaign.objects.select_related("route", "owner", "frame_version")
    if not (user.is_superuser or has_role(user, "reviewer", "admin")):
        campaigns = campaigns.filter(owner=user)
    return get_object_or_404(campaigns, pk=campaign_id)


def _get_campaign_for_owner(user, campaign_id) -> Campaign:
    """Only the owner (or an admin) changes a campaign."""
    campaign = _get_campaign_for_user(user, campaign_id)
    if campaign.owner_id != user.pk and not has_role(user, "admin"):
        raise PermissionDenied
    return campaign


@role_required(*DESIGNER_ROLES)
@require_safe
def campaign_list(request):
    campaigns = Campaign.objects.filter(owner=request.user).select_related("route")
    page = Paginator(campaigns, 25).get_page(request.GET.get("page"))
    return render(request, "campaigns/campaign_list.html", {"page": page})


@role_required(*DESIGNER_ROLES)
@require_http_methods(["GET", "HEAD", "POST"])
def campaign_new(request):
    """Paste or upload a table, check every row at once, see prompts and the estimate, then
    launch: nothing is queued until the whole table is valid."""
    form = CampaignForm(request.POST or None, request.FILES or None, user=request.user)
    preview = None
    status = 200
    if request.method == "POST" and form.is_valid():
        preview = form.preview(request.user)
        if request.POST.get("action") == "launch":
            try:
                campaign = launch(
                    owner=request.user,
                    name=form.cleaned_data["name"],
                    route=form.cleaned_data["route"],
                    rows=form.checked.rows,
                    frame_version=form.frame_version(),
                    template="" if form.cleaned_data["frame"] else form.cleaned_data["template"],
                    file_name_pattern=form.cleaned_data["file_name_pattern"],
                    mode=form.cleaned_data["when"],
                )
            except BudgetExceeded as refusal:
                form.add_error(None, str(refusal))
            except SubmissionFlood as flood:
                form.add_error(None, str(flood))
                status = 429
            else:
                messages.success(request, f"Campaign launched: {campaign.row_count:,} rows queued.")
                return redirect(campaign)
    context = {
        "form": form,
        "preview": preview,
        "checked": form.checked,
        "shown_prompts": PREVIEW_PROMPTS,
    }
    return render(request, "campaigns/campaign_new.html", context, status=status)


@login_required
@require_safe
def campaign_detail(request, campaign_id):
    campaign = _get_campaign_for_user(request.user, campaign_id)
    progress = campaign.progress()
    if request.htmx and request.GET.get("part") == "progress":
        response = render(
            request,
            "campaigns/campaign_detail.html#progress",
            {"campaign": campaign, "progress": progress},
        )
        if progress.is_done:
            response.status_code = HttpResponseStopPolling.status_code
        return response
    finals = OutputImage.objects.filter(kind=OutputImage.Kind.FINAL).order_by("index")
    rows = campaign.current_requests().prefetch_related(
        Prefetch("outputs", queryset=finals, to_attr="final_outputs")
    )
    page = Paginator(rows, CONTACT_SHEET_PAGE).get_page(request.GET.get("page"))
    context = {
        "campaign": campaign,
        "progress": progress,
        "page": page,
        "may_change": campaign.owner_id == request.user.pk or has_role(request.user, "admin"),
        "is_reviewer": has_role(request.user, "reviewer", "admin"),
        "may_publish": publishing_configured(),
    }
    return render(request, "campaigns/campaign_detail.html", context)


@role_required(*DESIGNER_ROLES)
@require_POST
def campaign_cancel(request, campaign_id):
    campaign = _get_campaign_for_owner(request.user, campaign_id)
    cancelled = campaign.cancel_remaining(request.user)
    messages.info(request, f"Cancelled {cancelled:,} rows that had not ended.")
    return redirect(campaign)


@role_required(*DESIGNER_ROLES)
@require_POST
def campaign_retry_failed(request, campaign_id):
    campaign = _get_campaign_for_owner(request.user, campaign_id)
    try:
        retried, left = campaign.retry_failed(request.user)
    except (BudgetExceeded, SubmissionFlood) as refusal:
        messages.error(request, str(refusal))
        return redirect(campaign)
    text = f"Queued {retried:,} failed rows again."
    if left:
        text += (
            f" {left:,} failed rows may have been billed and were not sent again; run them "
            "again one by one if you want to pay for them again."
        )
    messages.info(request, text)
    return redirect(campaign)


@role_required(*DESIGNER_ROLES)
@require_POST
def campaign_row_again(request, campaign_id, row):
    campaign = _get_campaign_for_owner(request.user, campaign_id)
    try:
        again = campaign.run_row_again(request.user, row)
    except (BudgetExceeded, SubmissionFlood) as refusal:
        messages.error(request, str(refusal))
        return redirect(campaign)
    if again is None:
        messages.info(request, f"Row {row} has not ended yet (or there is no such row).")
    else:
        messages.info(request, f"Row {row} queued again as request {again.id}.")
    return redirect(campaign)


@role_required(*DESIGNER_ROLES)
@require_POST
def campaign_publish(request, campaign_id):
    """Publish the approved outputs to the S3 prefix, in a worker."""
    campaign = _get_campaign_for_owner(request.user, campaign_id)
    if not publishing_configured():
        messages.error(request, "Publishing is not set up: an admin sets CAMPAIGN_PUBLISH_BUCKET.")
        return redirect(campaign)
    from campaigns.tasks import publish_campaign

    try:
        publish_campaign.delay(str(campaign.id))
    except Exception:
        messages.error(request, "The workers cannot be reached; publish again in a moment.")
    else:
        messages.info(
            request,
            f"Publishing the approved outputs to {settings.CAMPAIGN_PUBLISH_BUCKET}/"
            f"{settings.CAMPAIGN_PUBLISH_PREFIX}/{campaign.id}/.",
        )
    return redirect(campaign)


def publishing_configured() -> bool:
    return delivery.PUBLISH_STORAGE in settings.STORAGES


@login_required
@require_safe
def campaign_download(request, campaign_id):
    """The approved outputs as a ZIP, streamed, with manifest.csv."""
    campaign = _get_campaign_for_user(request.user, campaign_id)
    response = StreamingHttpResponse(delivery.zip_chunks(campaign), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.id}.zip"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
