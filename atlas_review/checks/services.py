"""Run the configured checks on extracted fields and keep their results, and the ingest
receiver that keeps check results and identifier sightings in step with Atlas's data.

For the review queue: `failed_checks_for_flow(flow)` lists the failures (field id, check
code, reason) to turn into queue items; results are stored before the review app's own
receiver runs, because this app is listed before it in INSTALLED_APPS (receivers run in
the order they connected).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

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


def evaluate_fields(
    fields: Iterable[ExtractedField], config: ChecksConfig, *, today: date | None = None
) -> list[FieldCheckResult]:
    """Unsaved results for the applicable checks (pure: no query)."""
    now = timezone.now()
    results = []
    for f in fields:
        for code in config.get((f.document_type, f.name), ()):
            outcome = run_check(code, f.value, today=today)
            if outcome.applicable:
                results.append(
                    FieldCheckResult(
                        field=f, check_code=code, passed=outcome.passed,
                        reason=outcome.reason[:300], checked_at=now,
                    )
                )  # fmt: skip
    return results


def _replace(stale, results: list[FieldCheckResult]) -> list[FieldCheckResult]:
    # Inside ingest this joins its transaction (no savepoint); alone it is its own.
    with transaction.atomic(savepoint=False):
        stale.delete()
        return FieldCheckResult.objects.bulk_create(results, batch_size=1000)


def run_checks_for_fields(
    fields: Iterable[ExtractedField], *, config: ChecksConfig | None = None
) -> list[FieldCheckResult]:
    """Recompute and store the check results of these fields (4 queries at most)."""
    fields = list(fields)
    config = load_config() if config is None else config
    results = evaluate_fields(fields, config)
    return _replace(FieldCheckResult.objects.filter(field__in=[f.pk for f in fields]), results)


def run_checks_for_flow(
    flow: Flow, *, fields: list[ExtractedField] | None = None, config: ChecksConfig | None = None
) -> list[FieldCheckResult]:
    """Recompute the results of the flow's current fields; withdrawn fields lose theirs."""
    if fields is None:
        fields = list(ExtractedField.objects.current().filter(flow=flow))
    config = load_config() if config is None else config
    results = evaluate_fields(fields, config)
    return _replace(FieldCheckResult.objects.filter(field__flow=flow), results)


def run_checks_for_batch(batch: Upload) -> list[FieldCheckResult]:
    """A v1 docstream batch: its fields have no flow."""
    fields = list(ExtractedField.objects.current().filter(document__v1_batch=batch))
    results = evaluate_fields(fields, load_config())
    return _replace(FieldCheckResult.objects.filter(field__document__v1_batch=batch), results)


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


def failed_checks_for_flow(flow: Flow | int) -> list[FailedCheck]:
    """The failed checks on the flow's current fields, one query. For the review queue:
    one item per field (key "field:<field_id>"), the reason naming the check."""
    flow_id = flow if isinstance(flow, int) else flow.pk
    rows = (
        FieldCheckResult.objects.filter(
            field__flow_id=flow_id, field__withdrawn_at__isnull=True, passed=False
        )
        .order_by("field__document_id", "field__position", "check_code")
        .values_list(
            "field_id", "field__document_id", "field__document_type", "field__name",
            "check_code", "reason",
        )
    )  # fmt: skip
    return [
        FailedCheck(
            field_id=field_id,
            document_id=document_id,
            document_type=document_type,
            field_name=name,
            check_code=code,
            label=CHECKS[code].label if code in CHECKS else code,
            reason=reason,
        )
        for field_id, document_id, document_type, name, code, reason in rows
    ]


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


def on_results_applied(sender, flow=None, batch=None, changes=None, **kwargs) -> None:
    """flows.ingest.results_applied, inside the ingest transaction: checks and sightings
    commit (or roll back) with Atlas's rows."""
    if flow is not None:
        fields = list(ExtractedField.objects.current().filter(flow=flow))
        run_checks_for_flow(flow, fields=fields)
        reuse.record_sightings(flow, fields=fields)
    elif batch is not None:
        run_checks_for_batch(batch)
