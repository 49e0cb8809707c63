"""Claims, decisions and outcomes.

Every state change two agents could race on is a conditional UPDATE with a row-count check
(claims, decision changes) or an INSERT guarded by a unique constraint (first decisions), so
exactly one of two concurrent agents wins and the other is told, never silently overwritten.
Each change appends a DecisionEvent in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, When
from django.utils import timezone

from .models import (
    FLOW_LEVEL_KINDS,
    Action,
    Decision,
    DecisionEvent,
    EventKind,
    FlowReview,
    ItemStatus,
    Kind,
    Outcome,
    Priority,
    Queue,
    ReasonCode,
    ReviewItem,
)

MAX_VALUE = 10_000


class ReviewError(Exception):
    """A refusal the agent should read (the views show the message)."""

    status = 409

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class ClaimHeld(ReviewError):
    pass


class FlowClosed(ReviewError):
    pass


class Conflict(ReviewError):
    pass


class Invalid(ReviewError):
    status = 400


def claim_expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=settings.REVIEW_CLAIM_MINUTES)


def _claimable(user, now: datetime) -> Q:
    return Q(claimed_by__isnull=True) | Q(claim_expires_at__lte=now) | Q(claimed_by=user)


def claim(flow_id: int, user, now: datetime | None = None) -> bool:
    """Claim (or renew) a flow for `user`: only if nobody else holds a live claim and the
    flow is not closed. One UPDATE; True if the user now holds it."""
    now = now or timezone.now()
    update = {
        "claimed_by": user,
        # A renewal keeps the original claim time.
        "claimed_at": Case(When(claimed_by=user, then=F("claimed_at")), default=now),
        "claim_expires_at": claim_expiry(now),
        "updated_at": now,
    }
    rows = FlowReview.objects.filter(_claimable(user, now), pk=flow_id, closed_at=None)
    if rows.update(**update):
        return True
    # A flow never flagged has no review row yet (opened from the flow list).
    _review, created = FlowReview.objects.get_or_create(flow_id=flow_id)
    return bool(created and rows.update(**update))


def current_holders(now: datetime | None = None) -> list[str]:
    """Usernames holding a live claim now (for the supervisors' "held by" filter)."""
    from django.contrib.auth import get_user_model

    live = FlowReview.objects.filter(
        claimed_by__isnull=False, claim_expires_at__gt=now or timezone.now()
    ).values("claimed_by")
    users = get_user_model().objects.filter(pk__in=live).order_by("username")
    return list(users.values_list("username", flat=True)[:200])


def holder_message(review: FlowReview, now: datetime | None = None) -> str:
    holder = review.holder(now)
    if review.is_closed:
        return "This flow is closed; a supervisor can reopen it."
    if holder is not None:
        until = timezone.localtime(review.claim_expires_at).strftime("%H:%M")
        return f"{holder.get_username()} is reviewing this flow (claimed until {until})."
    return "Open this flow for review to claim it first."


def _hold(flow_id: int, user, now: datetime) -> None:
    """Claim or renew inside the caller's transaction. The UPDATE's row lock on the
    FlowReview is held until commit, so another agent's claim waits for us and then sees
    ours: decisions on one flow are serialised."""
    if claim(flow_id, user, now):
        return
    review = FlowReview.objects.select_related("claimed_by").get(pk=flow_id)
    raise (FlowClosed if review.is_closed else ClaimHeld)(holder_message(review, now))


def _actor(user) -> dict:
    return {"actor": user, "actor_username": user.get_username() if user else ""}


def _item_refs(item: ReviewItem) -> dict:
    return {
        "flow_id": item.flow_id,
        "item": item,
        "document_id": item.document_id,
        "field_id": item.field_id,
        "cross_check_id": item.cross_check_id,
        "subject": item.subject,
    }


def can_change(decision: Decision, user) -> bool:
    """Decisions change only by their author (or a supervisor) while the flow is open."""
    return decision.author_id == user.pk or user.has_perm("review.reopen_flow")


def decide(
    item: ReviewItem,
    user,
    action: str,
    *,
    corrected_value: str | None = None,
    reason: ReasonCode | None = None,
    comment: str = "",
    version: int = 0,
) -> Decision:
    """Decide an item, or change one's decision on it.

    `version` is the version of the decision the agent saw (0: none). A first decision is
    an INSERT that the unique constraint on (item, not superseded) lets only one agent
    win; a change is an UPDATE conditional on that version, so a change made meanwhile (in
    another window, or by Atlas superseding it) is reported instead of overwritten."""
    if action not in Action.values:
        raise Invalid("Choose accept, correct or reject.")
    if item.kind in FLOW_LEVEL_KINDS:
        raise Invalid("This item is settled by the flow's outcome.")
    comment = (comment or "").strip()
    value = None
    if action == Action.CORRECT:
        value = (corrected_value or "").strip()
        if not value:
            raise Invalid("Type the correct value.")
        if len(value) > MAX_VALUE:
            raise Invalid(f"A corrected value is at most {MAX_VALUE} characters.")
    if action == Action.REJECT and reason is None:
        raise Invalid("Choose a reason for the rejection.")
    if action != Action.REJECT:
        reason = None

    now = timezone.now()
    with transaction.atomic():
        _hold(item.flow_id, user, now)
        # Re-read under the lock: Atlas's value may have changed since the page was drawn,
        # and the decision must snapshot what it is made on.
        item = ReviewItem.objects.select_related("field", "cross_check", "document").get(pk=item.pk)
        if item.status not in (ItemStatus.OPEN, ItemStatus.DECIDED):
            raise Conflict("Atlas's new data no longer flags this item; nothing to decide.")
        atlas_value, atlas_score = item.atlas_snapshot()
        values = {
            "action": action,
            "corrected_value": value,
            "reason": reason,
            "comment": comment,
            "atlas_value": atlas_value,
            "atlas_score": atlas_score,
            "decided_at": now,
        }
        current = Decision.objects.filter(item=item, superseded=False).first()
        if version == 0:
            if current is not None:
                raise Conflict(_taken(current, user))
            try:
                with transaction.atomic():
                    decision = Decision.objects.create(
                        item=item, flow_id=item.flow_id, author=user, **values
                    )
            except IntegrityError:
                current = Decision.objects.filter(item=item, superseded=False).first()
                raise Conflict(_taken(current, user)) from None
            kind, previous = EventKind.DECIDED, None
        else:
            if current is None:
                raise Conflict(
                    "Atlas changed this value after your decision; look again and decide anew."
                )
            if not can_change(current, user):
                raise Conflict(_taken(current, user))
            changed = Decision.objects.filter(
                pk=current.pk, superseded=False, version=version
            ).update(version=F("version") + 1, author=user, **values)
            if not changed:
                raise Conflict(
                    f"This decision was changed meanwhile (now: {current.get_action_display()}"
                    f" by {current.author.get_username()}); review it and try again."
                )
            previous = current
            decision = Decision.objects.get(pk=current.pk)
            kind = EventKind.CHANGED
        ReviewItem.objects.filter(pk=item.pk).update(status=ItemStatus.DECIDED, updated_at=now)
        item.status = ItemStatus.DECIDED
        DecisionEvent.objects.create(
            kind=kind, at=now, decision=decision, action=action, atlas_value=atlas_value,
            atlas_score=atlas_score, new_value=value, reason=reason,
            reason_code=reason.code if reason else "", reason_label=reason.label if reason else "",
            comment=comment, **_actor(user), **_item_refs(item),
            data={"previous_action": previous.action, "previous_author": previous.author.get_username()} if previous else {},
        )  # fmt: skip
    return decision


def _taken(current: Decision | None, user) -> str:
    if current is None:
        return "Someone else decided this item at the same moment; reload to see it."
    who = "You" if current.author_id == user.pk else current.author.get_username()
    where = " (in another window)" if current.author_id == user.pk else ""
    return (
        f"{who} already decided this item{where}: {current.get_action_display().lower()}. "
        "Nothing was overwritten."
    )


def summary(flow_id: int) -> dict[str, int]:
    """Counts of the flow's current decisions by action, and of items still undecided."""
    counts = Counter(
        Decision.objects.filter(flow_id=flow_id, superseded=False).values_list("action", flat=True)
    )
    return {
        **{a: counts.get(a, 0) for a in Action.values},
        "undecided": ReviewItem.objects.filter(flow_id=flow_id).needing_decision().count(),
    }


def close(flow_id: int, user, outcome: str, comment: str = "") -> dict[str, int]:
    """Give the flow its outcome. Every flagged item must be decided first; flow-level
    items (QA sample, sync failure, reopened) are settled by the outcome itself."""
    if outcome not in Outcome.values:
        raise Invalid("Choose an outcome: approved, rejected or needs more information.")
    now = timezone.now()
    with transaction.atomic():
        _hold(flow_id, user, now)
        counts = summary(flow_id)
        if counts["undecided"]:
            n = counts["undecided"]
            raise Invalid(f"{n} item{'s' if n != 1 else ''} still need{'s' if n == 1 else ''} a decision.")  # fmt: skip
        closed = FlowReview.objects.filter(pk=flow_id, closed_at=None, claimed_by=user).update(
            outcome=outcome, outcome_comment=comment.strip(), closed_at=now, closed_by=user,
            claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now,
        )  # fmt: skip
        if not closed:  # cannot happen while we hold the row lock; kept as the guard
            raise Conflict("This flow was closed meanwhile.")
        ReviewItem.objects.filter(flow_id=flow_id, kind__in=FLOW_LEVEL_KINDS).open().update(
            status=ItemStatus.CLOSED, updated_at=now
        )
        DecisionEvent.objects.create(
            kind=EventKind.OUTCOME, at=now, flow_id=flow_id, outcome=outcome,
            comment=comment.strip(), data={"summary": counts}, **_actor(user),
        )  # fmt: skip
    return counts


def release(flow_id: int, by, *, own: bool = False) -> bool:
    """Release a claim: a supervisor releasing anyone's, or an agent their own (skip).
    Conditional on the holder we read, so a claim taken meanwhile is not released."""
    now = timezone.now()
    with transaction.atomic():
        review = FlowReview.objects.select_related("claimed_by").filter(pk=flow_id).first()
        holder = review.holder(now) if review else None
        if holder is None or (own and holder.pk != by.pk):
            return False
        released = FlowReview.objects.filter(
            pk=flow_id, claimed_by=holder, claim_expires_at__gt=now
        ).update(claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now)
        if released:
            DecisionEvent.objects.create(
                kind=EventKind.CLAIM_RELEASED, at=now, flow_id=flow_id,
                data={"released_claim_of": holder.get_username(), "own": own}, **_actor(by),
            )  # fmt: skip
    return bool(released)


def reopen(flow_id: int, by, comment: str = "") -> None:
    """A supervisor reopens a closed flow: it goes back to the exceptions queue at high
    priority with the supervisor's note; decisions stay, and can be changed."""
    now = timezone.now()
    comment = comment.strip()
    with transaction.atomic():
        review = FlowReview.objects.select_for_update().select_related("flow").get(pk=flow_id)
        if not review.is_closed:
            raise Invalid("This flow is not closed.")
        FlowReview.objects.filter(pk=flow_id).update(
            closed_at=None, closed_by=None, outcome="", outcome_comment="", updated_at=now
        )
        reason = f"Reopened by {by.get_username()}" + (f": {comment}" if comment else "")
        item, created = ReviewItem.objects.get_or_create(
            flow_id=flow_id, key="reopened",
            defaults={
                "kind": Kind.REOPENED, "queue": Queue.EXCEPTIONS, "rule": "reopened",
                "reason": reason, "priority": Priority.HIGH, "created_at": now,
                "product_type": review.flow.product_type,
            },
        )  # fmt: skip
        if not created:
            ReviewItem.objects.filter(pk=item.pk).update(
                status=ItemStatus.OPEN, reason=reason, created_at=now, updated_at=now
            )
        DecisionEvent.objects.create(
            kind=EventKind.REOPENED, at=now, flow_id=flow_id, outcome=review.outcome,
            comment=comment, data={"previous_outcome": review.outcome}, **_actor(by),
        )  # fmt: skip


def claim_next(user, queue: str, filters, *, see_all: bool, exclude=()) -> int | None:
    """Claim the first flow of the queue (with the agent's filters) nobody else holds.
    Candidates are tried in order; a claim another agent won a moment earlier just moves
    on to the next candidate."""
    from .queries import first_flows

    for flow_id in first_flows(queue, filters, user, see_all=see_all, exclude=exclude):
        if claim(flow_id, user):
            return flow_id
    return None
