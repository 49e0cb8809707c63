"""Each queue page joins only the rows it shows (queries.queue_page): the page must still cost
the same queries however many rows it draws, in every queue and with every kind of item."""

import pytest
from django.urls import reverse

from atlas_review.flows.models import Flow
from atlas_review.review import flagging

from .builders import check, document, make_flow

pytestmark = pytest.mark.django_db


def mixed_flow() -> None:
    """A field below threshold, a weak cross-check, an unreadable document, a failed sync."""
    flow = make_flow(
        [
            document(fields={"account_holder": ("Pashangh Irani", 0.42)}),
            document(error_code="INVALID_DOC", error_reason="multiple people"),
        ],
        [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Rd", 55)],
    )
    Flow.objects.filter(pk=flow.pk).update(sync_state="ERROR", last_error="boom")
    flagging.flag_flow(Flow.objects.get(pk=flow.pk))


@pytest.mark.parametrize("queue", ["fields", "checks", "exceptions"])
def test_a_queue_page_costs_the_same_for_more_rows_of_every_kind(
    queue, reviewer_client, django_assert_num_queries
):
    url = reverse("review:queue", args=[queue])
    mixed_flow()
    # session, user, user perms, group perms, rows (their joins), capped count, tab counts
    with django_assert_num_queries(7):
        first = reviewer_client.get(url)
    for _ in range(4):
        mixed_flow()
    with django_assert_num_queries(7):
        response = reviewer_client.get(url)

    rows = response.context["page"].rows
    assert len(rows) == 5 * len(first.context["page"].rows) > 0
    if queue == "exceptions":
        assert {r.kind for r in rows} == {"exception", "sync_failed"}
        assert b"INVALID_DOC" in response.content
    if queue == "checks":
        assert b"DELIVERY_ORDER" in response.content  # from the joined cross-check
