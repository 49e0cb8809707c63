"""Browser-side defences: Django's Content-Security-Policy on every page (scripts and styles
only from our origin, nothing inline), templates that need nothing inline, and login
throttling with django-axes.

`manage.py check --deploy` with production settings is tests/test_settings.py; throttling of
/atlas/auth is tests/callbacks/test_auth.py (test_repeated_failures_...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]


def template_files() -> list[Path]:
    dirs = [Path(d) for d in django_settings.TEMPLATES[0]["DIRS"]]
    dirs += [p for p in (ROOT / "atlas_review").glob("*/templates") if p.is_dir()]
    return sorted(f for d in dirs for f in d.rglob("*.html"))


INLINE = {
    "an inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "an event handler attribute": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "a style attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "a <style> element": re.compile(r"<style\b", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
    "htmx evaluating code": re.compile(r"hx-on|hx-vars|js:", re.I),
}


def test_templates_need_nothing_inline():
    files = template_files()
    assert len(files) >= 10
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}: {what}"
        for path in files
        for text in [path.read_text()]
        for what, pattern in INLINE.items()
        for m in pattern.finditer(text)
    ]
    assert found == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/accounts/login/", "/flows/", "/review/queue/fields/", "/admin/", "/audit/exports/"]
)
def test_pages_send_a_strict_content_security_policy(client, url):
    client.force_login(make_user("sup", "supervisor", is_staff=True))
    response = client.get(url)
    assert response.status_code == 200
    policy = {
        part.split()[0]: part.split()[1:]
        for part in response["Content-Security-Policy"].split(";")
        if part.strip()
    }
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    # The page itself runs nothing inline that the policy would block.
    html = response.content.decode()
    assert not INLINE["an inline <script>"].search(
        re.sub(r'<script type="application/json".*?</script>', "", html, flags=re.S)
    )


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_account_out(client):
    make_user("guesser-target", "reviewer")
    wrong = {"username": "guesser-target", "password": "not-it"}

    answers = [client.post("/accounts/login/", wrong).status_code for _ in range(6)]

    # AXES_FAILURE_LIMIT=5: four times the form again (with its error), and the fifth
    # failure locks the username at this address; the sixth is refused like the fifth.
    assert django_settings.AXES_FAILURE_LIMIT == 5
    assert answers == [200, 200, 200, 200, 429, 429]
    # Locked: even the right password is refused now, and no session is made.
    right = client.post("/accounts/login/", {**wrong, "password": "pw-guesser-target"})
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    # The lock is per username and address: another account from here still logs in.
    make_user("colleague", "reviewer")
    other = client.post("/accounts/login/", {"username": "colleague", "password": "pw-colleague"})
    assert other.status_code == 302
