"""Production settings: refuse to start insecurely, and pass Django's deploy checks.
Settings are read once at import, so each case runs manage.py in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # Only the basics: tests/settings.py put test-only values into this process' environment.
    clean = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    clean.update(
        DJANGO_SETTINGS_MODULE="atlas_review.settings", DATABASE_URL="sqlite:///:memory:", **env
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key():
    result = manage("check", SECRET_KEY="too-short")
    assert result.returncode != 0
    assert "at least 32 characters" in result.stderr


def test_debug_mode_starts_without_a_secret_key():
    assert manage("check", DEBUG="True").returncode == 0


def test_a_malformed_boolean_is_an_error_not_a_guess():
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be True or False" in result.stderr


def test_production_settings_pass_the_deploy_checks():
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY="a-real-secret-key-for-the-deploy-check-0123456789abcdef",
        ALLOWED_HOSTS="review.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
