import copy

import pytest
from django.urls import reverse

from atlas_review.atlas.payloads import parse_callback_data
from atlas_review.flows import ingest
from atlas_review.flows.models import Flow
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def make_flows(contract_payload, n: int, start: int = 0) -> list[Flow]:
    flows = []
    for i in range(start, start + n):
        payload = copy.deepcopy(contract_payload)
        payload["flow_uuid"] = f"flow-{i}"
        flow = Flow.objects.create(
            flow_uuid=f"flow-{i}", application_id=f"APP-{i}", product_type="PROD_CDL"
        )
        ingest.apply_callback_data(parse_callback_data(payload))
        flows.append(flow)
    return flows


def test_anonymous_users_are_sent_to_login(client):
    for url in (reverse("flows:list"), reverse("flows:detail", args=[1])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_a_user_without_a_role_is_refused(client):
    client.force_login(make_user("nobody"))
    assert client.get(reverse("flows:list")).status_code == 403


def test_the_list_shows_statuses_and_counts(reviewer_client, contract_payload):
    make_flows(contract_payload, 1)

    response = reviewer_client.get(reverse("flows:list"))

    assert response.status_code == 200
    row = response.context["page"][0]
    # The contract example: 4 documents, 2 of them with an error_code.
    assert (row.document_count, row.error_document_count) == (4, 2)
    # Below 0.80: 9 of the 10 invoice fields (customer_name is 0.9), 3 IMEI, 2 open-box.
    assert row.low_confidence_count == 14
    assert row.low_similarity_count == 1  # DEALER_ADDRESS at 60
    assert b"APP-0" in response.content


def test_the_list_costs_the_same_queries_for_more_flows(
    reviewer_client, contract_payload, django_assert_num_queries
):
    make_flows(contract_payload, 2)
    # session, user, user perms, group perms, count, page (per-flow counts are subqueries)
    with django_assert_num_queries(6) as small:
        reviewer_client.get(reverse("flows:list"))
    make_flows(contract_payload, 10, start=2)
    with django_assert_num_queries(len(small.captured_queries)):
        reviewer_client.get(reverse("flows:list"))


def test_the_htmx_refresh_returns_only_the_rows(reviewer_client, contract_payload):
    make_flows(contract_payload, 1)
    response = reviewer_client.get(reverse("flows:list"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b'id="flow-rows"' in response.content


def test_the_detail_shows_documents_fields_errors_and_checks(
    reviewer_client, contract_payload, django_assert_num_queries
):
    (flow,) = make_flows(contract_payload, 1)
    # session, user, 2x perms, flow, checks, documents, fields (one prefetch for all documents),
    # their check results (one prefetch), the flow's identifier sightings (reuse alerts)
    with django_assert_num_queries(10):
        response = reviewer_client.get(flow.get_absolute_url())
    body = response.content.decode()
    assert "UNRECOGNISED" in body and "document not in list" in body
    assert "INVALID_DOC" in body and "multiple people" in body
    assert "Pashangh Irani" in body  # cross-check target value
    assert "36732632" in body  # list value shown


def test_file_urls_that_are_not_http_are_never_links(reviewer_client, contract_payload):
    (flow,) = make_flows(contract_payload, 1)
    flow.documents.filter(position=0).update(file_url="javascript:alert(1)")
    body = reviewer_client.get(flow.get_absolute_url()).content.decode()
    assert "javascript:alert" not in body
