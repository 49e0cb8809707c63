"""The filters of an export, parsed in one place for the web page, background jobs and the
management commands (ExportFilterForm; parse_filters raises InvalidFilters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from atlas_review.flows.models import Flow
from atlas_review.review.models import Outcome

DATE_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True)
class ExportFilters:
    date_from: date | None = None
    date_to: date | None = None
    product_type: str = ""
    reviewer: str = ""  # a username
    reviewer_id: int | None = None
    outcome: str = ""

    def as_json(self) -> dict[str, str]:
        """The filters as given, in the form's own keys (parse_filters reads them back)."""
        values = {
            "date_from": self.date_from.isoformat() if self.date_from else "",
            "date_to": self.date_to.isoformat() if self.date_to else "",
            "product_type": self.product_type,
            "reviewer": self.reviewer,
            "outcome": self.outcome,
        }
        return {k: v for k, v in values.items() if v}

    def time_range(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) in the site's time zone: both dates are whole days, inclusive."""
        start = end = None
        if self.date_from:
            start = timezone.make_aware(datetime.combine(self.date_from, time.min))
        if self.date_to:
            end = timezone.make_aware(datetime.combine(self.date_to + timedelta(days=1), time.min))
        return start, end

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_json().items()) or "everything"


class ExportFilterForm(forms.Form):
    date_from = forms.DateField(
        required=False, input_formats=[DATE_FORMAT], label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )  # fmt: skip
    date_to = forms.DateField(
        required=False, input_formats=[DATE_FORMAT], label="To (inclusive)",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date as YYYY-MM-DD."},
    )  # fmt: skip
    product_type = forms.CharField(required=False, max_length=64, strip=True)
    reviewer = forms.CharField(
        required=False, max_length=150, strip=True, help_text="Username of the agent."
    )
    outcome = forms.ChoiceField(
        required=False,
        choices=[("", "Any"), *Outcome.choices],
        error_messages={
            "invalid_choice": "Choose one of: " + ", ".join(Outcome.values) + " (not %(value)s)."
        },
    )

    def clean_product_type(self) -> str:
        # A typo would otherwise give an empty file that looks like "nothing happened".
        value = self.cleaned_data["product_type"]
        if value and not Flow.objects.filter(product_type=value).exists():
            raise forms.ValidationError(f"No flow has product type {value!r}.")
        return value

    def clean_reviewer(self) -> str:
        value = self.cleaned_data["reviewer"]
        if value:
            user = (
                get_user_model()
                .objects.filter(**{get_user_model().USERNAME_FIELD: value})
                .only("pk")
                .first()
            )
            if user is None:
                raise forms.ValidationError(f"No user called {value!r}.")
            self.reviewer_id = user.pk
        return value

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def filters(self) -> ExportFilters:
        data = self.cleaned_data
        return ExportFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            product_type=data.get("product_type", ""),
            reviewer=data.get("reviewer", ""),
            reviewer_id=getattr(self, "reviewer_id", None),
            outcome=data.get("outcome", ""),
        )


class InvalidFilters(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))


def parse_filters(data) -> ExportFilters:
    """Filters from a query string, a job's stored JSON or command options (same keys)."""
    form = ExportFilterForm(data)
    if not form.is_valid():
        raise InvalidFilters({k: list(v) for k, v in form.errors.items()})
    return form.filters()
