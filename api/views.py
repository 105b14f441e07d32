"""Settings > API tokens: make one (its secret shown once), see and revoke your own; admins
see and revoke everyone's."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from api.forms import TokenForm, WebhookForm
from api.models import ApiToken, Webhook, WebhookDelivery
from studio.views import has_role


def is_token_admin(user) -> bool:
    return has_role(user, "admin")


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
@never_cache
def token_list(request):
    """Your tokens and a form for a new one. After creating, the page (not a redirect) shows
    the secret once: it is not stored anywhere it could be shown from again."""
    form = TokenForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        created = ApiToken.create_for(request.user, form.cleaned_data["name"], form.expires_at())
        form = TokenForm()
    context = {
        "form": form,
        "created": created,
        "tokens": ApiToken.objects.filter(user=request.user),
        "is_token_admin": is_token_admin(request.user),
    }
    return render(request, "api/tokens.html", context)


@login_required
@require_POST
def token_revoke(request, token_id):
    """Revoke one of your tokens; an admin may revoke anyone's."""
    tokens = ApiToken.objects.all()
    if not is_token_admin(request.user):
        tokens = tokens.filter(user=request.user)
    token = get_object_or_404(tokens, pk=token_id)
    if token.revoke(request.user):
        messages.success(request, f"Token {token.name!r} revoked; it no longer authenticates.")
    else:
        messages.info(request, f"Token {token.name!r} was already revoked.")
    if request.POST.get("next") == "all" and is_token_admin(request.user):
        return redirect("api:token-all")
    return redirect("api:tokens")


@login_required
@require_safe
def token_all(request):
    """Every user's tokens, for admins."""
    if not is_token_admin(request.user):
        raise PermissionDenied
    tokens = ApiToken.objects.select_related("user", "revoked_by")
    return render(request, "api/tokens_all.html", {"tokens": tokens})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def webhook_list(request):
    """Your webhooks and a form for a new one (its signing secret shown once, here)."""
    from api.webhooks import studio_hosts

    form = WebhookForm(request.POST or None, studio_hosts=studio_hosts(request))
    created = None
    if request.method == "POST" and form.is_valid():
        created = Webhook.objects.create(
            owner=request.user,
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            secret=Webhook.new_secret(),
        )
        form = WebhookForm(studio_hosts=studio_hosts(request))
    hooks = Webhook.objects.filter(owner=request.user)
    return render(request, "api/webhooks.html", {"form": form, "created": created, "hooks": hooks})


def _own_hook(request, webhook_id) -> Webhook:
    return get_object_or_404(Webhook.objects.filter(owner=request.user), pk=webhook_id)


@login_required
@require_safe
def webhook_detail(request, webhook_id):
    """The delivery log: each event, its status, tries, answer and time, with Replay."""
    hook = _own_hook(request, webhook_id)
    deliveries = hook.deliveries.all()[:200]
    return render(request, "api/webhook_detail.html", {"hook": hook, "deliveries": deliveries})


@login_required
@require_POST
def webhook_delete(request, webhook_id):
    hook = _own_hook(request, webhook_id)
    hook.delete()
    messages.success(request, f"Webhook to {hook.url} deleted; nothing more is sent there.")
    return redirect("webhooks:list")


@login_required
@require_POST
def webhook_replay(request, webhook_id, delivery_id):
    """Send a logged delivery's event again, as a new delivery with the same payload."""
    from api.webhooks import queue

    hook = _own_hook(request, webhook_id)
    original = get_object_or_404(hook.deliveries, pk=delivery_id)
    [replay] = queue([hook], original.event, original.payload)
    WebhookDelivery.objects.filter(pk=replay.pk).update(replay_of=original)
    messages.success(request, f"Delivery {original.pk} queued again as {replay.pk}.")
    return redirect("webhooks:detail", webhook_id=hook.pk)
