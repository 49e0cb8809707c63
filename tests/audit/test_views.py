"""The Exports page, inline downloads, background jobs, their progress and their files."""

import csv
import io

import pytest
from django.core.signals import request_finished
from django.db import close_old_connections, connections
from django.urls import reverse

from atlas_review.audit import exports, views
from atlas_review.audit.filters import ExportFilters, parse_filters
from atlas_review.audit.models import ExportJob
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
PAGE = reverse("audit:exports")
DOWNLOAD = reverse("audit:download")
START = reverse("audit:start_job")


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def make_job(user, **kw) -> ExportJob:
    values = {"kind": "decisions", "via": "background", "status": "running",
              "requested_by": user.username if user else "command"}  # fmt: skip
    return ExportJob.objects.create(user=user, **{**values, **kw})


# --- Who may ---------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login(client, auditor):
    job = make_job(auditor)
    for url in (PAGE, DOWNLOAD, reverse("audit:job", args=[job.pk]),
                reverse("audit:job_file", args=[job.pk])):  # fmt: skip
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))
    assert client.post(START, {"kind": "decisions"}).status_code == 302
    assert not ExportJob.objects.exclude(pk=job.pk).exists()


def test_reviewers_and_users_without_a_role_are_refused(client, reviewer, auditor):
    job = make_job(auditor, status="done")
    for user in (reviewer, make_user("nobody")):
        client.force_login(user)
        for url in (PAGE, DOWNLOAD, reverse("audit:job", args=[job.pk]),
                    reverse("audit:job_file", args=[job.pk])):  # fmt: skip
            assert client.get(url).status_code == 403, (user, url)
        assert client.post(START, {"kind": "decisions"}).status_code == 403
    assert ExportJob.objects.count() == 1


@pytest.mark.parametrize("role", ["auditor", "supervisor"])
def test_auditors_and_supervisors_may_export(client, role, trail):
    client.force_login(make_user("someone", role))
    assert client.get(PAGE).status_code == 200
    response = client.get(DOWNLOAD, {"kind": "flows"})
    assert response.status_code == 200
    assert len(csv_rows(body(response))) == 3


def test_the_nav_links_to_exports_only_for_those_who_may(client, auditor, reviewer):
    client.force_login(auditor)
    assert PAGE.encode() in client.get(PAGE).content
    client.force_login(reviewer)
    assert PAGE.encode() not in client.get(reverse("flows:list")).content


# --- The page --------------------------------------------------------------------------------


def test_the_page_costs_the_same_queries_however_many_exports(
    auditor_client, auditor, django_assert_num_queries
):
    make_job(auditor)
    # session, user, user perms, group perms, recent exports (users joined)
    with django_assert_num_queries(5) as few:
        auditor_client.get(PAGE)
    for _ in range(25):
        make_job(auditor, status="done", rows_written=10)
    with django_assert_num_queries(len(few.captured_queries)):
        response = auditor_client.get(PAGE)
    assert len(response.context["jobs"]) == 20


def test_auditors_see_their_own_exports_and_supervisors_everyones(client, auditor, supervisor):
    mine, theirs = make_job(auditor), make_job(make_user("aud2", "auditor"))
    client.force_login(auditor)
    assert list(client.get(PAGE).context["jobs"]) == [mine]
    client.force_login(supervisor)
    assert set(client.get(PAGE).context["jobs"]) == {mine, theirs}


# --- Inline downloads ------------------------------------------------------------------------


def test_a_small_export_streams_at_once_and_is_recorded(auditor_client, auditor, trail):
    response = auditor_client.get(
        DOWNLOAD, {"kind": "decisions", "reviewer": "agent.bilal", "bom": "1"}
    )

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="atlas-decisions')
    data = body(response)
    assert data.startswith(b"\xef\xbb\xbf")
    filters = parse_filters({"reviewer": "agent.bilal"})
    assert data == b"".join(exports.CsvExport("decisions", filters, bom=True).chunks())
    assert [r["actor"] for r in csv_rows(data)] == ["agent.bilal", "agent.bilal"]
    job = ExportJob.objects.get()
    assert (job.user, job.via, job.status, job.rows_written) == (auditor, "web", "done", 2)
    assert job.filters == {"reviewer": "agent.bilal"}
    assert job.bom


def test_an_interrupted_download_is_recorded_as_such(rf, auditor, trail, monkeypatch):
    monkeypatch.setattr(exports, "FLUSH_ROWS", 2)
    request = rf.get(DOWNLOAD, {"kind": "decisions"})
    request.user = auditor
    response = views.download(request)
    next(iter(response.streaming_content))
    # The client went away: the server closes the response mid-stream. (Keep
    # request_finished from closing the test's database connection, as the test client does.)
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    job = ExportJob.objects.get()
    assert (job.status, job.rows_written) == ("failed", 2)
    assert job.error == "The download was interrupted."


def test_bad_filters_show_the_form_with_errors(auditor_client):
    response = auditor_client.get(
        DOWNLOAD, {"kind": "decisions", "date_from": "tomorrow", "reviewer": "ghost"}
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "date_from": ["Enter a date as YYYY-MM-DD."],
        "reviewer": ["No user called 'ghost'."],
    }
    assert b"No user called" in response.content
    assert not ExportJob.objects.exists()


# --- Background jobs -------------------------------------------------------------------------


def test_a_large_export_is_offered_as_a_background_job(auditor_client, trail, settings):
    settings.EXPORT_INLINE_MAX_ROWS = 5
    response = auditor_client.get(DOWNLOAD, {"kind": "decisions", "product_type": "PROD_CDL"})
    assert response.status_code == 200
    assert not response.streaming
    assert response.context["too_large"]
    content = response.content.decode()
    assert f'action="{START}"' in content
    assert 'type="hidden" name="product_type" value="PROD_CDL"' in content
    assert not ExportJob.objects.exists()  # a GET never starts a job


def test_the_background_job_writes_the_file_and_the_owner_downloads_it(
    auditor_client, auditor, trail, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = auditor_client.post(
            START, {"kind": "decisions", "product_type": "PROD_CDL", "bom": "True"}
        )
    job = ExportJob.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("audit:job", args=[job.pk])
    assert (job.user, job.via, job.status) == (auditor, "background", "done")
    assert job.rows_expected == job.rows_written == 8
    assert job.path.is_file() and job.path.is_relative_to(media / "exports")
    assert job.file_size == job.path.stat().st_size

    page = auditor_client.get(job.get_absolute_url())
    assert reverse("audit:job_file", args=[job.pk]).encode() in page.content
    download = auditor_client.get(reverse("audit:job_file", args=[job.pk]))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment; ")
    data = b"".join(download.streaming_content)
    assert data.startswith(b"\xef\xbb\xbf")
    assert data == b"".join(
        exports.CsvExport("decisions", ExportFilters(product_type="PROD_CDL"), bom=True).chunks()
    )


def test_only_the_owner_and_supervisors_reach_a_job(client, auditor, supervisor, media):
    job = make_job(auditor, status="done", file="exports/x.csv")
    (media / "exports").mkdir()
    (media / "exports" / "x.csv").write_bytes(b"a,b\r\n")
    urls = (reverse("audit:job", args=[job.pk]), reverse("audit:job_file", args=[job.pk]))

    client.force_login(make_user("aud2", "auditor"))
    assert [client.get(u).status_code for u in urls] == [404, 404]
    client.force_login(supervisor)
    assert [client.get(u).status_code for u in urls] == [200, 200]
    client.force_login(auditor)
    assert [client.get(u).status_code for u in urls] == [200, 200]


def test_a_file_is_never_served_from_outside_the_exports_folder(auditor_client, auditor, media):
    (media / "secret.txt").write_text("no")
    job = make_job(auditor, status="done", file="exports/../secret.txt")
    assert auditor_client.get(reverse("audit:job_file", args=[job.pk])).status_code == 404


def test_a_running_job_has_no_file_yet(auditor_client, auditor):
    job = make_job(auditor, status="running")
    assert auditor_client.get(reverse("audit:job_file", args=[job.pk])).status_code == 404


def test_the_progress_polls_while_running_and_stops_when_done(
    auditor_client, auditor, django_assert_num_queries
):
    job = make_job(auditor, status="running", rows_expected=200, rows_written=50)
    url = job.get_absolute_url()

    page = auditor_client.get(url)
    assert b'hx-trigger="every 1s"' in page.content and b"<html" in page.content

    # session, user, user perms, group perms, the job (with its user)
    with django_assert_num_queries(5):
        partial = auditor_client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert b"<html" not in partial.content
    assert b'hx-trigger="every 1s"' in partial.content
    assert b'value="25"' in partial.content  # 50 of 200 rows
    assert b"50 of 200 rows" in partial.content

    ExportJob.objects.filter(pk=job.pk).update(status="done", rows_written=200)
    done = auditor_client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx swaps this in and stops polling
    assert b"hx-trigger" not in done.content
    assert reverse("audit:job_file", args=[job.pk]).encode() in done.content


def test_a_failed_job_says_why(
    auditor_client, auditor, media, django_capture_on_commit_callbacks, django_user_model
):
    with django_capture_on_commit_callbacks(execute=True):
        auditor_client.post(START, {"kind": "flows"})
    job = ExportJob.objects.get()
    assert job.status == "done"

    # A job whose stored filters no longer parse (the reviewer was renamed since).
    broken = make_job(auditor, status="queued", filters={"reviewer": "renamed"})
    exports.run_job(broken.pk)
    broken.refresh_from_db()
    assert broken.status == "failed"
    assert "No user called 'renamed'" in broken.error
    assert not list((media / "exports").rglob("*.partial"))
    done = auditor_client.get(broken.get_absolute_url(), headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert b"No user called" in done.content


def test_a_job_runs_once_even_if_the_task_is_delivered_twice(auditor, trail, media):
    job = make_job(auditor, status="queued", kind="flows")
    exports.run_job(job.pk)
    job.refresh_from_db()
    finished = job.finished_at
    exports.run_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.rows_written, job.finished_at) == ("done", 3, finished)


@pytest.mark.django_db(transaction=True)
def test_a_running_jobs_progress_is_visible_to_other_sessions(auditor, trail, media, monkeypatch):
    # The export holds one transaction open; the progress page reads from another session
    # and must see the rows written so far.
    monkeypatch.setattr(exports, "FLUSH_ROWS", 3)
    monkeypatch.setattr(exports, "PROGRESS_EVERY", 3)
    seen = []
    real = exports._progress_writer

    def spying(job_id):
        write, close = real(job_id)

        def write_and_look(rows):
            write(rows)
            other = connections.create_connection("default")
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT status, rows_written FROM audit_exportjob WHERE id = %s", [job_id]
                )
                seen.append(cursor.fetchone())
            other.close()

        return write_and_look, close

    monkeypatch.setattr(exports, "_progress_writer", spying)
    job = make_job(auditor, status="queued")
    exports.run_job(job.pk)
    assert seen == [("running", 3), ("running", 6), ("running", 9)]
    job.refresh_from_db()
    assert (job.status, job.rows_written, job.rows_expected) == ("done", 10, 10)
