"""Run the configured checks on extracted fields and keep their results, and the ingest
receiver that keeps check results and identifier sightings in step with Atlas's data.

For the review queue: `failed_checks_for_flow(flow)` lists the failures (field id, check
code, reason) to turn into queue items; results are stored before the review app's own
receiver runs, because this app is listed before it in INSTALLED_APPS (receivers run in
the order they connected). At ingest, the receiver also hands what it read and wrote to
that next receiver (`checked_state(changes, flow)`), so flagging does not read it again.

Results are kept, not replaced: a re-delivery inserts new results, updates those whose
outcome changed and deletes those no longer applicable; an unchanged result is not written
and keeps its checked_at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from atlas_review.flows import bulk
from atlas_review.flows.models import ExtractedField, Flow, Upload

from . import reuse
from .models import FieldCheck, FieldCheckResult, RevealEvent
from .validators import CHECKS, run_check

ChecksConfig = dict[tuple[str, str], tuple[str, ...]]


def load_config() -> ChecksConfig:
    """(document_type, field_name) -> check codes, from the active FieldCheck rows."""
    config: dict[tuple[str, str], list[str]] = {}
    rows = FieldCheck.objects.active().values_list("document_type", "field_name", "check_code")
    for document_type, field_name, code in rows:
        if code in CHECKS:  # a code removed from the registry is ignored, not a crash
            config.setdefault((document_type, field_name), []).append(code)
    return {key: tuple(codes) for key, codes in config.items()}


def _outcomes(fields, config: ChecksConfig, today: date | None):
    """(field, check code, CheckResult) for each applicable check on these fields."""
    for f in fields:
        for code in config.get((f.document_type, f.name), ()):
            outcome = run_check(code, f.value, today=today)
            if outcome.applicable:
                yield f, code, outcome


def evaluate_fields(
    fields: Iterable[ExtractedField], config: ChecksConfig, *, today: date | None = None
) -> list[FieldCheckResult]:
    """Unsaved results for the applicable checks (pure: no query)."""
    now = timezone.now()
    return [
        FieldCheckResult(
            field_id=f.pk, check_code=code, passed=outcome.passed,
            reason=outcome.reason[:300], checked_at=now,
        )
        for f, code, outcome in _outcomes(fields, config, today)
    ]  # fmt: skip


def _store(stored, wanted: list[FieldCheckResult]) -> list[FieldCheckResult]:
    """Bring the stored results (a queryset) in line with `wanted`: one read, then at most
    one INSERT, one UPDATE and one DELETE, each only if needed. Returns the results now
    stored, in the order of `wanted` (unchanged ones are the stored rows)."""
    existing = {(r.field_id, r.check_code): r for r in stored}
    current, to_create, to_update = [], [], []
    for result in wanted:
        old = existing.pop((result.field_id, result.check_code), None)
        if old is None:
            to_create.append(result)
            current.append(result)
            continue
        if (old.passed, old.reason) != (result.passed, result.reason):
            old.passed, old.reason, old.checked_at = result.passed, result.reason, result.checked_at
            to_update.append(old)
        current.append(old)
    # Inside ingest this joins its transaction (no savepoint); alone it is its own.
    with transaction.atomic(savepoint=False):
        if existing:  # no longer applicable: the value emptied, the check or field went
            FieldCheckResult.objects.filter(pk__in=[r.pk for r in existing.values()]).delete()
        if to_create:
            FieldCheckResult.objects.bulk_create(to_create, batch_size=1000)
        if to_update:
            FieldCheckResult.objects.bulk_update(
                to_update, ["passed", "reason", "checked_at"], batch_size=1000
            )
    return current


def run_checks_for_fields(
    fields: Iterable[ExtractedField], *, config: ChecksConfig | None = None
) -> list[FieldCheckResult]:
    """Recompute and store the check results of these fields (2 queries when nothing
    changed, 5 at most)."""
    fields = list(fields)
    config = load_config() if config is None else config
    results = evaluate_fields(fields, config)
    return _store(FieldCheckResult.objects.filter(field__in=[f.pk for f in fields]), results)


def run_checks_for_flow(
    flow: Flow, *, fields: list[ExtractedField] | None = None, config: ChecksConfig | None = None
) -> list[FieldCheckResult]:
    """Recompute the results of the flow's current fields; withdrawn fields lose theirs."""
    if fields is None:
        fields = list(ExtractedField.objects.current().filter(flow=flow))
    config = load_config() if config is None else config
    results = evaluate_fields(fields, config)
    return _store(FieldCheckResult.objects.filter(field__flow=flow), results)


def run_checks_for_batch(batch: Upload) -> list[FieldCheckResult]:
    """A v1 docstream batch: its fields have no flow."""
    fields = list(ExtractedField.objects.current().filter(document__v1_batch=batch))
    results = evaluate_fields(fields, load_config())
    return _store(FieldCheckResult.objects.filter(field__document__v1_batch=batch), results)


@dataclass(frozen=True, slots=True)
class FailedCheck:
    field_id: int
    document_id: int
    document_type: str
    field_name: str
    check_code: str
    label: str
    reason: str

    @property
    def subject(self) -> str:
        return f"{self.document_type}.{self.field_name}"


def _failed_check(f: ExtractedField, code: str, reason: str) -> FailedCheck:
    return FailedCheck(
        field_id=f.pk, document_id=f.document_id, document_type=f.document_type,
        field_name=f.name, check_code=code, label=CHECKS[code].label if code in CHECKS else code,
        reason=reason,
    )  # fmt: skip


def failed_checks_for_flow(flow: Flow | int) -> list[FailedCheck]:
    """The failed checks on the flow's current fields, one query. For the review queue:
    one item per field (key "field:<field_id>"), the reason naming the check."""
    flow_id = flow if isinstance(flow, int) else flow.pk
    return failed_checks_for_flows([flow_id]).get(flow_id, [])


def failed_checks_for_flows(flow_ids: list[int]) -> dict[int, list[FailedCheck]]:
    """failed_checks_for_flow for many flows, one query: flow id -> its failed checks."""
    rows = (
        FieldCheckResult.objects.filter(
            field__flow_id__in=flow_ids, field__withdrawn_at__isnull=True, passed=False
        )
        .order_by("field__document_id", "field__position", "check_code")
        .values_list(
            "field__flow_id", "field_id", "field__document_id", "field__document_type",
            "field__name", "check_code", "reason",
        )
    )  # fmt: skip
    found: dict[int, list[FailedCheck]] = {}
    for flow_id, field_id, document_id, document_type, name, code, reason in rows:
        found.setdefault(flow_id, []).append(
            FailedCheck(
                field_id=field_id,
                document_id=document_id,
                document_type=document_type,
                field_name=name,
                check_code=code,
                label=CHECKS[code].label if code in CHECKS else code,
                reason=reason,
            )
        )
    return found


def recheck_all(chunk_size: int = 2000) -> int:
    """Re-run every check on every current field (after an administrator edits the
    FieldCheck rows). Chunked by primary key so memory stays flat. Returns fields seen."""
    config = load_config()
    last_pk, seen = 0, 0
    while True:
        chunk = list(
            ExtractedField.objects.current().filter(pk__gt=last_pk).order_by("pk")[:chunk_size]
        )
        if not chunk:
            return seen
        run_checks_for_fields(chunk, config=config)
        last_pk, seen = chunk[-1].pk, seen + len(chunk)


def record_reveal(user: AbstractBaseUser, field: ExtractedField) -> RevealEvent:
    return RevealEvent.objects.create(
        actor=user,
        actor_username=user.get_username(),
        field=field,
        flow_id=field.flow_id,
        document_type=field.document_type,
        field_name=field.name,
        value=field.value,
    )


@dataclass(frozen=True)
class CheckedFlow:
    """What the ingest receiver read and stored for one flow: its current fields (in the
    default order), their check results and its identifiers. Handed to the review flagging,
    which needs exactly these, so it does not read them again."""

    flow_id: int
    fields: list[ExtractedField]
    results: list  # FieldCheckResult rows, or NewResult for first results
    identifiers: reuse.Mine
    reuse: list[reuse.Reuse]  # its identifiers in other flows, within the window

    def failed_checks(self) -> list[FailedCheck]:
        """As failed_checks_for_flow, without a query."""
        by_id = {f.pk: f for f in self.fields}
        failed = sorted(
            (r for r in self.results if not r.passed and r.field_id in by_id),
            key=lambda r: (by_id[r.field_id].document_id, by_id[r.field_id].position, r.check_code),
        )
        return [_failed_check(by_id[r.field_id], r.check_code, r.reason) for r in failed]


# The attribute of flows.ingest.Changes the hand-off rides on: the same Changes object goes
# to every receiver of one results_applied, and only to them.
_HANDOFF = "checked_flow"


def checked_state(changes, flow: Flow) -> CheckedFlow | None:
    """The state the checks receiver left for this flow on `changes`, if any."""
    state = getattr(changes, _HANDOFF, None)
    return state if state is not None and state.flow_id == flow.pk else None


def check_flow(flow: Flow) -> CheckedFlow:
    """Run the checks and record the sightings of the flow's current fields, and find its
    identifiers in other flows."""
    fields = list(ExtractedField.objects.current().filter(flow=flow))
    results = run_checks_for_flow(flow, fields=fields)
    identifiers, reused = reuse.record_and_find(flow, fields=fields)
    return CheckedFlow(flow.pk, fields, results, identifiers, reused)


def check_first_deliveries(deliveries) -> list[CheckedFlow]:
    """check_flow for flows whose first results were just written (flows.ingest
    .results_created): nothing of theirs is stored here yet, so every result and sighting is
    new and all of them are written by COPY, and their identifiers are looked up in other
    flows with one query for the batch (after their own sightings are written, so two new
    flows sharing an identifier find each other). Each CheckedFlow is also left on its
    delivery's Changes for the review flagging."""
    config, now, today = load_config(), timezone.now(), timezone.localdate()
    per_flow, result_rows = [], []
    for delivery in deliveries:
        results = [
            NewResult(f.pk, code, outcome.passed, outcome.reason[:300])
            for f, code, outcome in _outcomes(delivery.fields, config, today)
        ]
        result_rows.extend((r.field_id, r.check_code, r.passed, r.reason, now) for r in results)
        per_flow.append(results)
    bulk.copy(FieldCheckResult, _RESULT_COLUMNS, result_rows)
    found = reuse.record_and_find_new([(d.flow, d.fields) for d in deliveries], now=now)
    states = []
    for delivery, results in zip(deliveries, per_flow, strict=True):
        mine, reused = found[delivery.flow.pk]
        state = CheckedFlow(delivery.flow.pk, delivery.fields, results, mine, reused)
        setattr(delivery.changes, _HANDOFF, state)
        states.append(state)
    return states


_RESULT_COLUMNS = ("field_id", "check_code", "passed", "reason", "checked_at")


@dataclass(frozen=True, slots=True)
class NewResult:
    """A check result written by check_first_deliveries, as CheckedFlow reads results."""

    field_id: int
    check_code: str
    passed: bool
    reason: str


def on_results_created(sender, deliveries=(), **kwargs) -> None:
    """flows.ingest.results_created: first results, inside the ingest transaction."""
    check_first_deliveries(deliveries)


def on_results_applied(sender, flow=None, batch=None, changes=None, **kwargs) -> None:
    """flows.ingest.results_applied, inside the ingest transaction: checks and sightings
    commit (or roll back) with Atlas's rows."""
    if flow is not None:
        state = check_flow(flow)
        if changes is not None:
            setattr(changes, _HANDOFF, state)
    elif batch is not None:
        run_checks_for_batch(batch)
