"""The poll path end to end: the real client and tasks against the running simulator,
results found in PostgreSQL."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from atlas_review.atlas.client import AtlasClient
from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows import services, tasks
from atlas_review.flows.models import (
    CrossCheck,
    Document,
    ExtractedField,
    Flow,
    Payload,
    SyncState,
    Upload,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(settings):
    with start_simulator(processing_seconds=0, callbacks=False) as sim:
        settings.ATLAS_BASE_URL = sim.v3_url
        settings.ATLAS_DOCSTREAM_URL = sim.v1_url
        yield sim


@pytest.fixture
def start(django_capture_on_commit_callbacks):
    """create_flow queues its start on commit; run it as a committed request would."""

    def start(*args, **kwargs) -> Flow:
        with django_capture_on_commit_callbacks(execute=True):
            flow = services.create_flow(*args, **kwargs)
        flow.refresh_from_db()
        return flow

    return start


def files(sim, app: str, kinds=("invoice", "delivery_order", "aadhaar", "imei")):
    return [(sim.file_url(f"{app}-{kind}.svg"), str(n + 1)) for n, kind in enumerate(kinds)]


def test_a_flow_is_started_polled_and_stored(sim, start):
    flow = start("APP-1", files(sim, "APP-1"))  # inline: init + upload + poll

    assert flow.flow_uuid and flow.sync_state == SyncState.DONE
    assert (flow.upload_status, flow.master_status) == ("SUCCESS", "SUCCESS")
    assert Upload.objects.get(flow=flow).api == "v3"
    docs = Document.objects.filter(flow=flow)
    assert docs.count() >= 4
    assert ExtractedField.objects.filter(flow=flow).count() > 10
    assert CrossCheck.objects.filter(flow=flow).exists()
    # file_url comes from what we uploaded, matched by document_id.
    assert all(d.file_url.startswith(sim.url) for d in docs if d.document_id)
    assert Payload.objects.get(flow=flow).outcome == Payload.Outcome.APPLIED


def test_syncing_a_finished_flow_again_changes_nothing(sim, start):
    flow = start("APP-2", files(sim, "APP-2"))
    fields_before = list(ExtractedField.objects.filter(flow=flow).values_list("id", "updated_at"))

    flow.sync_state = SyncState.POLLING
    flow.save()
    services.sync_flow(flow.pk)

    assert (
        list(ExtractedField.objects.filter(flow=flow).values_list("id", "updated_at"))
        == fields_before
    )
    assert list(Payload.objects.filter(flow=flow).values_list("outcome", flat=True)) == [
        "duplicate",
        "applied",
    ]


def test_a_failed_flow_is_shown_as_failed(sim, start):
    sim.knobs.update({"fail_rate": 1.0})
    flow = start("APP-3", files(sim, "APP-3"))
    assert flow.sync_state == SyncState.FAILED
    assert flow.master_status == "FAILED"
    assert "FAILED" in flow.last_error
    assert Flow.objects.sync_failed().filter(pk=flow.pk).exists()


def test_a_flow_stuck_in_progress_is_given_up_after_the_deadline(sim, settings, start):
    sim.knobs.update({"stuck_rate": 1.0})
    flow = start("APP-4", files(sim, "APP-4"))
    assert flow.sync_state == SyncState.POLLING

    Flow.objects.filter(pk=flow.pk).update(
        processing_started_at=timezone.now() - timedelta(hours=7)
    )
    services.sync_flow(flow.pk)

    flow.refresh_from_db()
    assert flow.sync_state == SyncState.GAVE_UP
    assert "stopped polling" in flow.last_error


def test_atlas_unreachable_backs_off_and_records_the_error(settings):
    settings.ATLAS_BASE_URL = "http://127.0.0.1:9/v3/verification"  # nothing listens on port 9
    client = AtlasClient.from_settings(max_retries=0)
    flow = Flow.objects.create(
        application_id="APP-5", product_type="PROD_CDL", next_sync_at=timezone.now(),
        requested_files=[{"file_url": "https://x.example/a.jpg", "document_id": "1"}],
    )  # fmt: skip

    services.sync_flow(flow.pk, client=client)

    flow.refresh_from_db()
    assert flow.sync_state == SyncState.NEW, "a transient error is retried later, not final"
    assert flow.error_count == 1 and "ConnectionError" in flow.last_error
    assert flow.next_sync_at > timezone.now()


def test_two_sweeps_at_once_poll_each_due_flow_once(sim, monkeypatch, start, settings):
    settings.ATLAS_POLL_INTERVAL_SECONDS = 7
    sim.knobs.update({"stuck_rate": 1.0})
    flow = start("APP-6", files(sim, "APP-6"))
    Flow.objects.filter(pk=flow.pk).update(next_sync_at=timezone.now() - timedelta(seconds=1))
    dispatched = []
    monkeypatch.setattr(tasks.sync_flow, "delay", dispatched.append)

    first, second = tasks.sweep(), tasks.sweep()

    assert dispatched == [flow.pk]
    assert (first["flows"], second["flows"]) == (1, 0)


def test_a_v1_batch_reads_every_page(sim):
    batch_files = files(sim, "B1", kinds=("aadhaar", "pan", "invoice", "aadhaar", "pan"))
    client = AtlasClient.from_settings()
    batch = services.create_batch(batch_files, client=client)
    Upload.objects.filter(pk=batch.pk).update(next_sync_at=timezone.now())

    original = client.v1_extracts
    client.v1_extracts = lambda batch_id: original(batch_id, per_page=2)  # 3 pages
    services.sync_batch(batch.pk, client=client)

    batch.refresh_from_db()
    assert batch.sync_state == SyncState.DONE
    # Atlas's own count (an invoice upload can yield two documents, as in the contract).
    total = client.v1_extracts(batch.batch_id)[0][1].total_items
    assert total >= 5
    assert Document.objects.filter(v1_batch=batch).count() == total
    pages = -(-total // 2)
    assert Payload.objects.filter(upload=batch, source="poll_v1").count() == pages


def test_the_operator_commands_start_and_sync(sim, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "atlas_start_flow",
            "--application-id",
            "APP-7",
            "--file",
            sim.file_url("APP-7-invoice.svg") + "=1",
        )
    assert "APP-7" in capsys.readouterr().out
    assert Flow.objects.get(application_id="APP-7").sync_state == SyncState.DONE
    call_command("atlas_sync")
    assert "synced" in capsys.readouterr().out


def test_the_start_command_refuses_a_bad_file_argument(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="URL=DOCUMENT_ID"):
        call_command("atlas_start_flow", "--application-id", "A", "--file", "no-equals-sign")
