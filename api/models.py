"""Personal API tokens: a token acts as its user, with that user's role and limits.

The secret is shown once, when the token is made, and only its SHA-256 is stored. A fast,
unsalted hash is enough here (unlike for passwords) because the secret is 256 random bits
from `secrets`, not something a person chose: no dictionary or brute force can reach it, so
a slow hash would only add milliseconds to every API call; and an unsalted hash lets a call
find its token with one indexed lookup instead of trying every row.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "sts_"
# Shown in lists so a person can tell tokens apart: the prefix and the first characters.
DISPLAY_CHARS = len(TOKEN_PREFIX) + 6
# last_used_at is written at most this often per token: an API call need not write a row.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class TokenRefused(Exception):
    """Why a presented token does not authenticate (missing, unknown, expired, revoked)."""

    def __init__(self, message: str, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # the only time the whole secret exists outside the caller's hands


class ApiTokenQuerySet(models.QuerySet):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'CI script'.")
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    display_prefix = models.CharField(max_length=DISPLAY_CHARS, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…, {self.user})"

    @classmethod
    def create_for(cls, user, name: str, expires_at=None) -> NewToken:
        """Make a token for `user`; the returned secret is never stored or shown again."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            secret_sha256=hash_secret(secret),
            display_prefix=secret[:DISPLAY_CHARS],
            expires_at=expires_at,
        )
        return NewToken(token, secret)

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def revoke(self, by) -> bool:
        """Revoke once; False when it already was."""
        revoked = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=by
        )
        self.refresh_from_db()
        return bool(revoked)

    @classmethod
    def authenticate(cls, raw: str | None) -> ApiToken:
        """The usable token for a presented secret (with its user loaded), and its use noted.

        Raises TokenRefused naming why: no token, an unknown one, expired, revoked, or a
        deactivated user."""
        raw = (raw or "").strip()
        if not raw:
            raise TokenRefused(
                "You didn't provide an API key. Send a studio API token in an Authorization "
                "header using Bearer auth (Authorization: Bearer sts_...). Make one under "
                "Settings > API tokens."
            )
        if len(raw) > 200:
            raise TokenRefused("Incorrect API key provided: it is not a studio API token.")
        token = cls.objects.select_related("user").filter(secret_sha256=hash_secret(raw)).first()
        if token is None:
            raise TokenRefused(
                f"Incorrect API key provided: {raw[:DISPLAY_CHARS]}… is not a studio API token."
            )
        if token.revoked_at is not None:
            raise TokenRefused(f"The API token {token.name!r} was revoked.")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise TokenRefused(
                f"The API token {token.name!r} expired on {token.expires_at:%Y-%m-%d %H:%M} UTC."
            )
        if not token.user.is_active:
            raise TokenRefused("The API token's user account is deactivated.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token


class Webhook(models.Model):
    """A URL told about a user's requests: when one ends, and when a reviewer decides on one
    of its outputs. Deliveries are signed with the hook's own secret (api.webhooks)."""

    class Event(models.TextChoices):
        REQUEST_FINISHED = "request.finished", "A request finished (any ending)"
        REVIEW_DECIDED = "review.decided", "A reviewer decided on an output"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.url} ({self.owner})"

    @staticmethod
    def new_secret() -> str:
        return "whsec_" + secrets.token_urlsafe(32)


class WebhookDelivery(models.Model):
    """One event sent to one hook, with every try's outcome: the delivery log."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook.url}: {self.status}"
