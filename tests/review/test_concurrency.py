"""Two agents at the same moment, each on its own database connection (threads), against
real PostgreSQL transactions: exactly one wins, the other is told, nothing is overwritten."""

import threading

import pytest
from django.db import connection

from atlas_review.review import services
from atlas_review.review.models import Decision, DecisionEvent, ReviewItem
from tests.conftest import make_user
from tests.review.builders import three_field_flow

pytestmark = pytest.mark.django_db(transaction=True)


def race(*jobs):
    """Run the jobs in threads released together; return each one's result or exception."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except Exception as exc:  # the loser's refusal is the result we check
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    return results


def test_two_agents_deciding_the_same_item_at_once_one_wins():
    rita, otto = make_user("rita", "reviewer"), make_user("otto", "reviewer")
    for _ in range(3):  # a few rounds, so the timing varies
        flow = three_field_flow()
        item = ReviewItem.objects.get(flow=flow, name="account_holder")

        pk = item.pk
        results = race(
            lambda pk=pk: services.decide(ReviewItem.objects.get(pk=pk), rita, "accept"),
            lambda pk=pk: services.decide(
                ReviewItem.objects.get(pk=pk), otto, "correct", corrected_value="X"
            ),
        )

        winners = [r for r in results if isinstance(r, Decision)]
        losers = [r for r in results if isinstance(r, services.ReviewError)]
        assert (len(winners), len(losers)) == (1, 1), results
        assert "is reviewing this flow" in losers[0].message
        stored = Decision.objects.get(item=item)
        assert (stored.pk, stored.author_id) == (winners[0].pk, winners[0].author_id)


def test_one_agent_in_two_windows_decides_once():
    rita = make_user("rita", "reviewer")
    flow = three_field_flow()
    item = ReviewItem.objects.get(flow=flow, name="account_number")
    services.claim(flow.pk, rita)

    results = race(
        lambda: services.decide(ReviewItem.objects.get(pk=item.pk), rita, "accept"),
        lambda: services.decide(
            ReviewItem.objects.get(pk=item.pk), rita, "correct", corrected_value="1"
        ),
    )

    winners = [r for r in results if isinstance(r, Decision)]
    losers = [r for r in results if isinstance(r, services.Conflict)]
    assert (len(winners), len(losers)) == (1, 1), results
    assert "You already decided this item (in another window)" in losers[0].message
    assert Decision.objects.filter(item=item).count() == 1
    assert DecisionEvent.objects.filter(item=item).count() == 1


def test_two_changes_of_the_same_version_one_wins():
    rita = make_user("rita", "reviewer")
    flow = three_field_flow()
    item = ReviewItem.objects.get(flow=flow, name="ifsc")
    services.claim(flow.pk, rita)
    services.decide(item, rita, "accept")

    results = race(
        lambda: services.decide(
            ReviewItem.objects.get(pk=item.pk), rita, "correct", corrected_value="A", version=1
        ),
        lambda: services.decide(
            ReviewItem.objects.get(pk=item.pk), rita, "correct", corrected_value="B", version=1
        ),
    )

    winners = [r for r in results if isinstance(r, Decision)]
    assert len(winners) == 1, results
    stored = Decision.objects.get(item=item)
    assert (stored.version, stored.corrected_value) == (2, winners[0].corrected_value)
