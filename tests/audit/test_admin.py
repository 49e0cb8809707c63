"""The export records in the admin: listed, searchable, and read-only for everyone."""

import pytest
from django.urls import reverse

from atlas_review.audit.models import ExportJob
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
LIST = reverse("admin:audit_exportjob_changelist")


@pytest.fixture
def job(auditor) -> ExportJob:
    return ExportJob.objects.create(
        user=auditor, requested_by=auditor.username, kind="decisions", via="web",
        status="done", rows_written=12, filters={"outcome": "rejected"},
    )  # fmt: skip


def test_superusers_see_the_records_but_cannot_change_or_delete_them(admin_client, job):
    page = admin_client.get(LIST, {"q": "aud"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [job]

    change = reverse("admin:audit_exportjob_change", args=[job.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert admin_client.post(change, {"rows_written": 1}).status_code == 403
    assert admin_client.get(reverse("admin:audit_exportjob_add")).status_code == 403
    delete = reverse("admin:audit_exportjob_delete", args=[job.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    job.refresh_from_db()
    assert job.rows_written == 12


def test_staff_see_them_only_if_their_role_allows(client, job):
    supervisor = make_user("sup", "supervisor", is_staff=True)
    client.force_login(supervisor)
    assert client.get(LIST).status_code == 200
    reviewer = make_user("rev", "reviewer", is_staff=True)
    client.force_login(reviewer)
    assert client.get(LIST).status_code == 403
