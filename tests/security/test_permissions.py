"""Every URL the project serves, for every role, in one test. The URL list comes from the URL
resolver, so a new page is in the matrix the day it is added (and fails it until its row
is written below); path arguments are filled from real objects.

Anonymous visitors get the login page (the admin's, under /admin/) and Atlas's machine
endpoints a 401, never data. The admin follows one rule, checked on all its URLs: only
staff get in, and staff see what their model permissions allow (none here, so nothing but
the index); the superuser sees everything."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver

from atlas_review.audit.models import ExportJob
from atlas_review.flows.models import ExtractedField
from atlas_review.review.models import ReviewItem
from tests.conftest import make_user
from tests.review.builders import three_field_flow

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "no_role", "reviewer", "supervisor", "auditor", "staff", "superuser")
SECRET_APP = "MATRIX-APP-7f3a"  # the flow's application id: data an outsider must not see

LOGIN = "login"  # 302 to /accounts/login/?next=...
ADMIN_LOGIN = "admin-login"  # 302 to /admin/login/?next=...
READ = {"reviewer": 200, "supervisor": 200, "auditor": 200, "superuser": 200}
DECIDE = {"reviewer": 302, "supervisor": 302, "superuser": 302}
SUPERVISE = {"supervisor": 302, "superuser": 302}
EXPORT = {"supervisor": 200, "auditor": 200, "superuser": 200}

# url name -> (method, {role: expected}); a role not named gets 403. The POSTs send an empty
# form: a 302 or 400 means the role got past the permission check and the view then
# answered on the merits (a message and a redirect, or the form's errors).
EXPECTED: dict[str, tuple[str, dict[str, int | str]]] = {
    "": ("GET", dict.fromkeys(ROLES, 302)),  # to review:home, which checks
    "login": ("GET", dict.fromkeys(ROLES, 200)),
    "logout": ("POST", dict.fromkeys(ROLES, LOGIN)),
    "flows:list": ("GET", {**READ, "anonymous": LOGIN}),
    "flows:detail": ("GET", {**READ, "anonymous": LOGIN}),
    "review:home": ("GET", {**dict.fromkeys(ROLES[1:], 302), "anonymous": LOGIN}),
    "review:nav_counts": ("GET", {**READ, "anonymous": LOGIN}),
    "review:queue": ("GET", {**READ, "anonymous": LOGIN}),
    "review:next": ("POST", {**DECIDE, "anonymous": LOGIN}),
    "review:flow": ("GET", {**READ, "anonymous": LOGIN}),
    "review:decide": ("POST", {**DECIDE, "anonymous": LOGIN}),
    "review:close": ("POST", {**DECIDE, "anonymous": LOGIN}),
    "review:skip": ("POST", {**DECIDE, "anonymous": LOGIN}),
    "review:release": ("POST", {**SUPERVISE, "anonymous": LOGIN}),
    "review:reopen": ("POST", {**SUPERVISE, "anonymous": LOGIN}),
    # Machine endpoints: no session counts, only Atlas's credentials or token.
    "callbacks:auth": ("POST", dict.fromkeys(ROLES, 401)),
    "callbacks:callback": ("POST", dict.fromkeys(ROLES, 401)),
    "callbacks:callback_v1": ("POST", dict.fromkeys(ROLES, 401)),
    "checks:reveal": ("POST", {**READ, "anonymous": LOGIN}),
    "audit:exports": ("GET", {**EXPORT, "anonymous": LOGIN}),
    "audit:download": ("GET", {**EXPORT, "anonymous": LOGIN}),
    "audit:start_job": ("POST", {**dict.fromkeys(EXPORT, 400), "anonymous": LOGIN}),
    # The auditor's own job: supervisors see everyone's; anyone else would get a 404.
    "audit:job": ("GET", {**EXPORT, "anonymous": LOGIN}),
    "audit:job_file": ("GET", {**dict.fromkeys(EXPORT, 404), "anonymous": LOGIN}),  # no file yet
    "overview:page": ("GET", {"supervisor": 200, "superuser": 200, "anonymous": LOGIN}),
}
# Pages whose answer names the flow: a role let in must see it there (the matrix is about data).
SHOWS_DATA = {"flows:list", "flows:detail", "review:flow", "audit:download"}
# Query strings for pages that need one to show data (the flows export lists SECRET_APP).
QUERY = {"audit:download": "?kind=flows"}


def patterns(resolver=None, prefix="", namespace=""):
    """(route, url name, pattern) for every URL, admin included."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = ":".join(filter(None, [namespace, entry.namespace]))
            yield from patterns(entry, prefix + str(entry.pattern), ns)
        else:
            assert isinstance(entry, URLPattern)
            if entry.name:
                name = ":".join(filter(None, [namespace, entry.name]))
            else:  # the site root, and the admin's final catch-all view
                name = f"{namespace}:<catch-all>" if namespace else ""
            yield prefix + str(entry.pattern), name, entry


@pytest.fixture
def world(db):
    users = {
        "no_role": make_user("nobody"),
        "reviewer": make_user("rita", "reviewer"),
        "supervisor": make_user("sam", "supervisor"),
        "auditor": make_user("aud", "auditor"),
        "staff": make_user("stef", is_staff=True),
        "superuser": make_user("root", is_staff=True, is_superuser=True),
    }
    flow = three_field_flow(application_id=SECRET_APP)
    item = ReviewItem.objects.filter(flow=flow).first()
    job = ExportJob.objects.create(
        user=users["auditor"], kind=ExportJob.Kind.DECISIONS, via=ExportJob.Via.WEB
    )
    values = {
        "pk": flow.pk, "flow_id": flow.pk, "item_id": item.pk, "queue": "fields",
        "field_id": ExtractedField.objects.filter(flow=flow).first().pk,
    }  # fmt: skip
    return users, values, {"audit:job": job.pk, "audit:job_file": job.pk}


def url_for(route: str, name: str, entry: URLPattern, values: dict, overrides: dict) -> str:
    """The route with its converters filled from real objects."""
    if name == "admin:<catch-all>":
        return "/admin/no-such-page/"
    kwargs = {}
    # path() converters, or re_path() named groups (the admin's app pages, its catch-all).
    for key in entry.pattern.converters or entry.pattern.regex.groupindex:
        if name in overrides:
            kwargs[key] = overrides[name]
        elif name.startswith("admin:"):
            kwargs[key] = admin_value(name, key)
        else:
            kwargs[key] = values[key]
    from django.urls import reverse

    return reverse(name, kwargs=kwargs) if name else "/" + route


def admin_value(name: str, key: str):
    model_admin = ADMIN_MODELS.get(name.rsplit("_", 1)[0].removeprefix("admin:"))
    if key == "app_label":
        return "flows"
    if key == "content_type_id":
        return ContentType.objects.get_for_model(User).pk
    if key == "object_id" or key == "id":
        if model_admin is None:  # view_on_site
            return User.objects.first().pk
        return model_admin.model._default_manager.values_list("pk", flat=True).first() or 0
    raise AssertionError(f"no value for {key} in {name}")


ADMIN_MODELS = {
    f"{m._meta.app_label}_{m._meta.model_name}": a for m, a in admin.site._registry.items()
}


def admin_expected(name: str, role: str, url: str) -> set:
    if name == "admin:login":
        return {200, 302}
    if name == "admin:logout":  # POST only; others are sent to the admin index
        return {405} if role in ("staff", "superuser") else {302}
    if role not in ("staff", "superuser"):
        return {ADMIN_LOGIN}
    missing = "/0/" in url  # no row of that model: the admin says so and redirects
    if role == "superuser":
        # Read-only models (Atlas's data, the journal, the decision trail) have no add or
        # delete, for anyone.
        refused = name.endswith(("_add", "_delete")) or name == "admin:autocomplete"
        return {200, 302, 404} | ({403} if refused else set())
    if name in ("admin:index", "admin:password_change", "admin:password_change_done"):
        return {200}
    if name == "admin:jsi18n":
        return {200}
    if name in ("admin:view_on_site", "admin:<catch-all>", "admin:app_list"):
        return {302, 404}  # an app page lists no model the user may see: 404
    return {403} | ({302} if missing else set())


def outcome(response) -> int | str:
    if response.status_code == 302:
        path = urlsplit(response.url).path
        if path == "/accounts/login/":
            return LOGIN
        if path == "/admin/login/":
            return ADMIN_LOGIN
    return response.status_code


def test_every_url_for_every_role(client, world):
    users, values, overrides = world
    urls = []
    for route, name, entry in patterns():
        if not name.startswith("admin:"):
            assert name in EXPECTED, f"{name or route!r} is not in the matrix: add its row"
        urls.append((name, url_for(route, name, entry, values, overrides) + QUERY.get(name, "")))
    assert {name for name, _url in urls if not name.startswith("admin:")} == set(EXPECTED), (
        "rows for URLs that no longer exist"
    )
    assert len(urls) - len(EXPECTED) > 50, "the admin's URLs are in the matrix too"

    problems = []
    for role in ROLES:
        client.logout()
        if role != "anonymous":
            client.force_login(users[role])
        for name, url in urls:
            is_admin = name.startswith("admin:")
            method = "GET" if is_admin else EXPECTED[name][0]
            response = client.generic(method, url)
            got = outcome(response)
            want = (
                admin_expected(name, role, url) if is_admin else {EXPECTED[name][1].get(role, 403)}
            )
            if got not in want:
                problems.append(f"{method} {url} as {role}: {got}, expected {want}")
            if name == "logout" and role != "anonymous":
                client.force_login(users[role])
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if role in ("anonymous", "no_role", "staff"):
                assert SECRET_APP.encode() not in body, (url, role)
            elif name in SHOWS_DATA and got == 200:
                assert SECRET_APP.encode() in body, f"{url} as {role} shows the flow"
    assert problems == [], "\n".join(problems)
