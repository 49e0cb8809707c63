"""Who may push results to us: credentials Atlas presents at /atlas/auth, the short-lived
tokens we issue in exchange, and a record of refused attempts.

Nothing here stores a secret or a token in a form that could be replayed: secrets are
hashed with Django's password hashers, tokens with SHA-256 (they are 256-bit random values,
so a fast hash is enough and keeps the per-callback look-up to one indexed query).
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    return f"atlas-{secrets.token_hex(6)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CallbackCredentialQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class CallbackCredential(models.Model):
    """A client id / secret pair an administrator issued to Atlas (besides the env pair)."""

    client_id = models.CharField(max_length=100, unique=True, default=new_client_id)
    secret_hash = models.CharField(max_length=200, editable=False)
    label = models.CharField(
        max_length=200, blank=True, help_text="Who holds it, e.g. 'Atlas production'."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = CallbackCredentialQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.client_id} ({self.label})" if self.label else self.client_id

    def clean(self) -> None:
        env_id = settings.ATLAS_CALLBACK_CLIENT_ID
        if env_id and self.client_id == env_id:
            # Two secrets for one client id would make it ambiguous which one is checked.
            raise ValidationError(
                {"client_id": "This client id is the one set in the environment."}
            )

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def set_new_secret(self) -> str:
        """Hash a fresh secret into the row (not saved) and return it: the only time it exists
        in clear text is this return value, which the admin shows once."""
        secret = new_secret()
        self.secret_hash = make_password(secret)
        return secret

    def check_secret(self, secret: str) -> bool:
        return check_password(secret, self.secret_hash)


class CallbackTokenQuerySet(models.QuerySet):
    def expired(self, now=None):
        # uses callbacktoken_expires_idx
        return self.filter(expires_at__lte=now or timezone.now())


class CallbackToken(models.Model):
    """A bearer token issued at /atlas/auth. Only its SHA-256 is stored."""

    token_hash = models.CharField(max_length=64, unique=True)
    # Null for tokens issued to the environment pair.
    credential = models.ForeignKey(
        CallbackCredential, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    client_id = models.CharField(max_length=100)
    # For env tokens: a keyed digest of the env pair they were issued under, so changing
    # ATLAS_CALLBACK_CLIENT_SECRET invalidates them at once instead of at expiry.
    env_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    objects = CallbackTokenQuerySet.as_manager()

    class Meta:
        indexes = [
            # Pruning expired tokens after each successful /atlas/auth.
            models.Index(fields=["expires_at"], name="callbacktoken_expires_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(credential__isnull=False) | ~Q(env_fingerprint=""),
                name="callbacktoken_has_issuer",
            )
        ]

    def __str__(self) -> str:
        return f"token for {self.client_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class AuthAttempt(models.Model):
    """A refused /atlas/auth or callback request. Never holds a secret, a token or a body."""

    class Endpoint(models.TextChoices):
        AUTH = "auth", "/atlas/auth"
        CALLBACK = "callback", "/atlas/callback"
        CALLBACK_V1 = "callback_v1", "/atlas/v1/callback"

    class Reason(models.TextChoices):
        MISSING_CREDENTIALS = "missing_credentials", "Client-Id or Client-Secret missing"
        UNKNOWN_CLIENT = "unknown_client", "Unknown client id"
        WRONG_SECRET = "wrong_secret", "Wrong secret"
        REVOKED = "revoked", "Credential revoked"
        MISSING_TOKEN = "missing_token", "Token header missing"
        INVALID_TOKEN = "invalid_token", "Unknown token"
        EXPIRED_TOKEN = "expired_token", "Token expired"

    created_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=16, choices=Endpoint)
    client_id = models.CharField(max_length=100, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    reason = models.CharField(max_length=32, choices=Reason)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at"], name="authattempt_recent_idx")]

    def __str__(self) -> str:
        return f"{self.get_endpoint_display()} {self.get_reason_display()}"
