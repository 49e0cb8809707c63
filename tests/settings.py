"""Test settings: the real settings module with test-friendly environment defaults.

Tests run against PostgreSQL (DATABASE_URL, default the local `test` database)."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("TESTING", "True")
os.environ.setdefault("SECURE_SSL_REDIRECT", "False")
os.environ.setdefault("SECURE_COOKIES", "False")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("CELERY_BROKER_URL", "")
os.environ.setdefault("ATLAS_CALLBACK_CLIENT_ID", "atlas-callback-test")
os.environ.setdefault("ATLAS_CALLBACK_CLIENT_SECRET", "callback-secret-for-tests-only")

from atlas_review.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ATLAS_POLL_INTERVAL_SECONDS = 0
