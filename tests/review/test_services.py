from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from atlas_review.flows.models import ExtractedField
from atlas_review.review import services
from atlas_review.review.models import (
    Decision,
    DecisionEvent,
    FlowReview,
    ItemStatus,
    Kind,
    Queue,
    ReasonCode,
    ReviewItem,
)
from atlas_review.review.queries import QueueFilters
from tests.conftest import make_user
from tests.review.builders import PLAIN, check, document, make_flow, three_field_flow

pytestmark = pytest.mark.django_db


@pytest.fixture
def other(db):
    return make_user("otto", "reviewer")


@pytest.fixture
def flow():
    return three_field_flow()


@pytest.fixture
def reason(db):
    # get_or_create: a transactional test elsewhere may have flushed the seeded codes.
    return ReasonCode.objects.get_or_create(code="illegible", defaults={"label": "Illegible"})[0]


def item(flow, name="account_holder") -> ReviewItem:
    return ReviewItem.objects.select_related("field").get(flow=flow, name=name)


# --- claims -------------------------------------------------------------------------------


def test_a_claim_is_taken_once_and_renewed_by_its_holder(flow, reviewer, other):
    assert services.claim(flow.pk, reviewer)
    first = FlowReview.objects.get(pk=flow.pk)

    assert not services.claim(flow.pk, other), "held by rita"
    assert services.claim(flow.pk, reviewer, timezone.now() + timedelta(minutes=10))

    renewed = FlowReview.objects.get(pk=flow.pk)
    assert renewed.claimed_by == reviewer
    assert renewed.claimed_at == first.claimed_at, "a renewal keeps when the claim began"
    assert renewed.claim_expires_at > first.claim_expires_at


def test_an_expired_claim_can_be_taken_by_someone_else(flow, reviewer, other, settings):
    services.claim(flow.pk, reviewer)
    later = timezone.now() + timedelta(minutes=settings.REVIEW_CLAIM_MINUTES + 1)

    assert services.claim(flow.pk, other, later)
    assert FlowReview.objects.get(pk=flow.pk).claimed_by == other


def test_a_flow_nothing_flagged_can_still_be_claimed(reviewer):
    flow = make_flow([document(fields={"bank_name": ("HDFC", 0.99)})], flow_uuid="never-flagged")
    FlowReview.objects.filter(flow=flow).delete()

    assert services.claim(flow.pk, reviewer)


def test_a_supervisor_releases_a_claim_and_it_is_recorded(flow, reviewer, supervisor):
    services.claim(flow.pk, reviewer)

    assert services.release(flow.pk, supervisor)

    assert FlowReview.objects.get(pk=flow.pk).claimed_by is None
    event = DecisionEvent.objects.get(kind="claim_released")
    assert (event.actor, event.data["released_claim_of"]) == (supervisor, "rita")
    assert not services.release(flow.pk, supervisor), "nothing left to release"


def test_an_agent_releases_only_their_own_claim(flow, reviewer, other):
    services.claim(flow.pk, reviewer)

    assert not services.release(flow.pk, other, own=True)
    assert services.release(flow.pk, reviewer, own=True)


def test_claim_next_takes_the_most_urgent_flow_nobody_holds(reviewer, other):
    normal = three_field_flow()
    urgent = make_flow([document()], [check("DEALER_ADDRESS", "a", "b", 50)])
    held = make_flow([document()], [check("DEALER_ADDRESS", "x", "y", 40)])
    services.claim(held.pk, other)

    fields = services.claim_next(reviewer, Queue.FIELDS, QueueFilters(), see_all=False)
    checks = services.claim_next(reviewer, Queue.CHECKS, QueueFilters(), see_all=False)

    assert (fields, checks) == (normal.pk, urgent.pk)
    assert FlowReview.objects.get(pk=urgent.pk).claimed_by == reviewer
    assert services.claim_next(other, Queue.CHECKS, QueueFilters(), see_all=False) == held.pk


# --- decisions ----------------------------------------------------------------------------


def test_accept_correct_and_reject_keep_atlas_value_and_a_snapshot(flow, reviewer, reason):
    services.claim(flow.pk, reviewer)

    accept = services.decide(item(flow, "account_holder"), reviewer, "accept")
    correct = services.decide(
        item(flow, "account_number"), reviewer, "correct", corrected_value=" 50100234568 "
    )
    reject = services.decide(
        item(flow, "ifsc"), reviewer, "reject", reason=reason, comment="smudged"
    )

    assert (accept.atlas_value, accept.atlas_score) == ("Pashangh Irani", 0.42)
    assert correct.corrected_value == "50100234568"
    assert ExtractedField.objects.get(name="account_number").value == "50100234567", (
        "Atlas's original is never overwritten"
    )
    assert (reject.reason, reject.comment) == (reason, "smudged")
    assert set(ReviewItem.objects.filter(flow=flow).values_list("status", flat=True)) == {
        ItemStatus.DECIDED
    }
    events = list(DecisionEvent.objects.filter(flow=flow).order_by("id"))
    assert [(e.kind, e.action, e.subject) for e in events] == [
        ("decided", "accept", f"{PLAIN}.account_holder"),
        ("decided", "correct", f"{PLAIN}.account_number"),
        ("decided", "reject", f"{PLAIN}.ifsc"),
    ]
    assert (events[1].atlas_value, events[1].new_value) == ("50100234567", "50100234568")
    assert (events[2].reason_code, events[2].comment, events[2].actor_username) == (
        "illegible",
        "smudged",
        "rita",
    )


def test_a_cross_check_decision_snapshots_both_values(reviewer):
    flow = make_flow([document()], [check("DEALER_ADDRESS", "12 MG Road", "12 M.G. Road", 71)])
    services.claim(flow.pk, reviewer)

    decision = services.decide(ReviewItem.objects.get(flow=flow), reviewer, "accept")

    assert decision.atlas_value == {"source": "12 MG Road", "target": "12 M.G. Road"}
    assert decision.atlas_score == 71


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("correct", {"corrected_value": "  "}, "Type the correct value."),
        ("correct", {"corrected_value": "9" * 10_001}, "at most 10000 characters"),
        ("reject", {}, "Choose a reason for the rejection."),
        ("approve", {}, "Choose accept, correct or reject."),
    ],
)
def test_an_incomplete_decision_is_refused(flow, reviewer, action, kwargs, message):
    services.claim(flow.pk, reviewer)

    with pytest.raises(services.Invalid, match=message):
        services.decide(item(flow), reviewer, action, **kwargs)
    assert not Decision.objects.exists()


def test_nobody_decides_on_a_flow_someone_else_holds(flow, reviewer, other):
    services.claim(flow.pk, reviewer)

    with pytest.raises(services.ClaimHeld, match="rita is reviewing this flow"):
        services.decide(item(flow), other, "accept")


def test_the_author_changes_a_decision_by_the_version_they_saw(flow, reviewer, reason):
    services.claim(flow.pk, reviewer)
    first = services.decide(item(flow), reviewer, "accept")

    changed = services.decide(item(flow), reviewer, "reject", reason=reason, version=1)

    assert (changed.pk, changed.version, changed.action) == (first.pk, 2, "reject")
    event = DecisionEvent.objects.get(kind="changed")
    assert event.data == {"previous_action": "accept", "previous_author": "rita"}
    with pytest.raises(services.Conflict, match="changed meanwhile"):
        services.decide(item(flow), reviewer, "accept", version=1)  # a stale window
    with pytest.raises(services.Conflict, match="You already decided this item"):
        services.decide(item(flow), reviewer, "accept", version=0)


def test_only_the_author_or_a_supervisor_changes_a_decision(
    flow, reviewer, other, supervisor, reason
):
    services.claim(flow.pk, reviewer)
    services.decide(item(flow), reviewer, "accept")
    services.release(flow.pk, supervisor)
    services.claim(flow.pk, other)

    with pytest.raises(services.Conflict, match="rita already decided this item"):
        services.decide(item(flow), other, "reject", reason=reason, version=1)

    services.release(flow.pk, supervisor)
    services.claim(flow.pk, supervisor)
    changed = services.decide(item(flow), supervisor, "reject", reason=reason, version=1)
    assert changed.author == supervisor  # the change is theirs, the trail keeps both


def test_a_flow_level_item_takes_no_decision(reviewer):
    flow = three_field_flow()
    services.claim(flow.pk, reviewer)
    qa = ReviewItem.objects.create(
        flow=flow, key="qa", kind=Kind.QA_SAMPLE, queue=Queue.QA, rule="qa", reason="QA"
    )

    with pytest.raises(services.Invalid):
        services.decide(qa, reviewer, "accept")


# --- outcome, reopen ----------------------------------------------------------------------


def test_a_flow_closes_only_when_every_flagged_item_is_decided(flow, reviewer):
    services.claim(flow.pk, reviewer)
    services.decide(item(flow, "account_holder"), reviewer, "accept")

    with pytest.raises(services.Invalid, match="2 items still need a decision"):
        services.close(flow.pk, reviewer, "approved")

    services.decide(item(flow, "account_number"), reviewer, "accept")
    services.decide(item(flow, "ifsc"), reviewer, "correct", corrected_value="HDFC0001235")
    summary = services.close(flow.pk, reviewer, "needs_info", "ask for a clearer statement")

    assert summary == {"accept": 2, "correct": 1, "reject": 0, "undecided": 0}
    review = FlowReview.objects.get(pk=flow.pk)
    assert (review.outcome, review.closed_by, review.claimed_by) == ("needs_info", reviewer, None)
    event = DecisionEvent.objects.get(kind="outcome")
    assert (event.outcome, event.data["summary"]["accept"]) == ("needs_info", 2)
    with pytest.raises(services.FlowClosed):
        services.decide(item(flow, "ifsc"), reviewer, "accept", version=1)


def test_closing_settles_the_flow_level_items(reviewer):
    flow = three_field_flow()
    services.claim(flow.pk, reviewer)
    ReviewItem.objects.create(
        flow=flow, key="qa", kind=Kind.QA_SAMPLE, queue=Queue.QA, rule="qa", reason="QA"
    )
    for i in ReviewItem.objects.filter(flow=flow).needing_decision():
        services.decide(i, reviewer, "accept")

    services.close(flow.pk, reviewer, "approved")

    assert ReviewItem.objects.get(flow=flow, key="qa").status == ItemStatus.CLOSED


def test_a_supervisor_reopens_a_flow_into_the_exceptions_queue(flow, reviewer, supervisor):
    services.claim(flow.pk, reviewer)
    for i in ReviewItem.objects.filter(flow=flow):
        services.decide(i, reviewer, "accept")
    services.close(flow.pk, reviewer, "approved")

    services.reopen(flow.pk, supervisor, "wrong IFSC accepted")

    review = FlowReview.objects.get(pk=flow.pk)
    assert review.closed_at is None and review.outcome == ""
    reopened = ReviewItem.objects.get(flow=flow, kind=Kind.REOPENED)
    assert (reopened.queue, reopened.status) == (Queue.EXCEPTIONS, ItemStatus.OPEN)
    assert reopened.reason == "Reopened by sam: wrong IFSC accepted"
    event = DecisionEvent.objects.get(kind="reopened")
    assert (event.actor, event.data["previous_outcome"]) == (supervisor, "approved")
    with pytest.raises(services.Invalid):
        services.reopen(flow.pk, supervisor)


# --- the trail is append-only --------------------------------------------------------------


def test_decision_events_cannot_be_changed_or_deleted(flow, reviewer):
    services.claim(flow.pk, reviewer)
    services.decide(item(flow), reviewer, "accept")
    event = DecisionEvent.objects.get()

    event.comment = "rewritten"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        DecisionEvent.objects.filter(pk=event.pk).update(comment="rewritten")
    with pytest.raises(TypeError):
        DecisionEvent.objects.all().delete()
    # Below the ORM, the database refuses too.
    for sql in (
        "UPDATE review_decisionevent SET comment = 'rewritten'",
        "DELETE FROM review_decisionevent",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert DecisionEvent.objects.get().comment == ""
