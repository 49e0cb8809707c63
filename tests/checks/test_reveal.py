"""Reveal: one masked value shown in clear to a reviewer, and recorded."""

import pytest
from django.urls import reverse

from atlas_review.checks.models import RevealEvent
from tests.conftest import make_user

from .conftest import customer_documents, field_of, ingest_flow, valid_aadhaar

pytestmark = pytest.mark.django_db
AADHAAR = valid_aadhaar()


@pytest.fixture
def aadhaar_field():
    flow = ingest_flow(customer_documents(aadhaar=AADHAAR))
    return field_of(flow, "AADHAAR", "aadhaar_number")


def reveal_url(field) -> str:
    return reverse("checks:reveal", args=[field.pk])


def test_anonymous_users_are_sent_to_login(client, aadhaar_field):
    response = client.post(reveal_url(aadhaar_field))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert not RevealEvent.objects.exists()


def test_a_user_without_a_role_is_refused(client, aadhaar_field):
    client.force_login(make_user("nobody"))

    response = client.post(reveal_url(aadhaar_field))

    assert response.status_code == 403
    assert AADHAAR not in response.content.decode()
    assert not RevealEvent.objects.exists()


def test_reveal_is_post_only(reviewer_client, aadhaar_field):
    assert reviewer_client.get(reveal_url(aadhaar_field)).status_code == 405
    assert not RevealEvent.objects.exists()


def test_an_unknown_field_is_404(reviewer_client, aadhaar_field):
    assert reviewer_client.post(reverse("checks:reveal", args=[999999])).status_code == 404


def test_htmx_reveal_returns_the_clear_value_and_records_who_saw_it(
    reviewer_client, reviewer, aadhaar_field, django_assert_num_queries
):
    # session, user, user perms, group perms, field with its flow, insert event
    with django_assert_num_queries(6):
        response = reviewer_client.post(reveal_url(aadhaar_field), headers={"HX-Request": "true"})

    assert response.status_code == 200
    body = response.content.decode()
    assert AADHAAR in body
    assert "<html" not in body  # the partial only, swapped in place of the masked value
    assert f'data-field-value="{aadhaar_field.pk}"' in body
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    (event,) = RevealEvent.objects.all()
    assert (event.actor, event.actor_username) == (reviewer, "rita")
    assert (event.field_id, event.flow_id) == (aadhaar_field.pk, aadhaar_field.flow_id)
    assert (event.subject, event.value) == ("AADHAAR.aadhaar_number", AADHAAR)


def test_without_javascript_reveal_is_a_page_linking_back(reviewer_client, aadhaar_field):
    response = reviewer_client.post(reveal_url(aadhaar_field))

    body = response.content.decode()
    assert "<html" in body and AADHAAR in body
    assert aadhaar_field.flow.get_absolute_url() in body
    assert RevealEvent.objects.count() == 1


def test_each_reveal_is_recorded(reviewer_client, aadhaar_field):
    reviewer_client.post(reveal_url(aadhaar_field))
    reviewer_client.post(reveal_url(aadhaar_field))

    assert RevealEvent.objects.count() == 2


def test_the_page_stays_masked_after_a_reveal(reviewer_client, aadhaar_field):
    reviewer_client.post(reveal_url(aadhaar_field))

    body = reviewer_client.get(aadhaar_field.flow.get_absolute_url()).content.decode()
    assert AADHAAR not in body


def test_reveal_events_are_append_only(reviewer_client, aadhaar_field):
    reviewer_client.post(reveal_url(aadhaar_field))
    event = RevealEvent.objects.get()

    event.actor_username = "someone else"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        RevealEvent.objects.update(actor_username="x")
    with pytest.raises(TypeError):
        RevealEvent.objects.all().delete()
    assert RevealEvent.objects.get().actor_username == "rita"


def test_the_admin_shows_reveals_read_only_and_masked(admin_client, reviewer_client, aadhaar_field):
    reviewer_client.post(reveal_url(aadhaar_field))
    event = RevealEvent.objects.get()

    changelist = admin_client.get(reverse("admin:checks_revealevent_changelist"))
    change = admin_client.get(reverse("admin:checks_revealevent_change", args=[event.pk]))

    for response in (changelist, change):
        body = response.content.decode()
        assert response.status_code == 200
        assert "rita" in body and AADHAAR not in body and AADHAAR[-4:] in body
    assert admin_client.get(reverse("admin:checks_revealevent_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:checks_revealevent_delete", args=[event.pk])).status_code
        == 403
    )
    assert RevealEvent.objects.count() == 1


def test_the_reveal_button_on_the_flow_page_passes_csrf(aadhaar_field, reviewer):
    import re

    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    page = client.get(aadhaar_field.flow.get_absolute_url()).content.decode()
    form = page[page.index(f'action="{reveal_url(aadhaar_field)}"') :]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)

    response = client.post(reveal_url(aadhaar_field), {"csrfmiddlewaretoken": token})

    assert response.status_code == 200 and AADHAAR in response.content.decode()
