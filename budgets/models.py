"""Teams, roles, API keys, budgets, spend counters and reservations: the state a budget check reads."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from costmonitor.money import money_field_kwargs


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        # The reference's AccessControl permissions; the `researcher` and `admin` groups carry them.
        permissions = [
            ("read_budgets", "Can read budgets, spend and analytics"),
            ("track_costs", "Can record API costs and reserve budget"),
            ("modify_budgets", "Can create and change budgets and breakers"),
            ("manage_alerts", "Can manage alerts and alert channels"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class ApiKey(models.Model):
    """A pipeline's key. Only a SHA-256 hash and a short prefix (to recognise it) are stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys",
                             help_text="Team its records are booked to; defaults to the owner's first team.")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditLog(models.Model):
    """Who changed what that matters (limits, breakers, keys), with the old and new values."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}#{self.object_id}"


class Budget(models.Model):
    class Scope(models.TextChoices):
        ORGANIZATION = "organization", "Organisation"
        TEAM = "team", "Team"
        USER = "user", "User"
        CATEGORY = "category", "Research category"
        MODEL = "model", "Model"

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        MONTHLY = "monthly", "Monthly"
        FIXED = "fixed", "Fixed date range"

    class Enforcement(models.TextChoices):
        HARD = "hard", "Hard (deny)"
        SOFT = "soft", "Soft (allow and alert)"

    name = models.CharField(max_length=120)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ORGANIZATION)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="budgets")
    research_category = models.CharField(max_length=100, blank=True, default="")
    model_name = models.CharField(max_length=100, blank=True, default="")
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.DAILY)
    starts_on = models.DateField(null=True, blank=True, help_text="Fixed periods only (inclusive).")
    ends_on = models.DateField(null=True, blank=True, help_text="Fixed periods only (inclusive).")
    limit_usd = models.DecimalField(**money_field_kwargs())
    warning_percentage = models.DecimalField(max_digits=6, decimal_places=2, default=75)
    critical_percentage = models.DecimalField(max_digits=6, decimal_places=2, default=90)
    exceeded_percentage = models.DecimalField(max_digits=6, decimal_places=2, default=100)
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.HARD)
    is_active = models.BooleanField(default=True)
    # The organisation daily/monthly budgets are the reference's global limits (update_budget_limits).
    is_global_default = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "name"]
        indexes = [models.Index(fields=["is_active", "scope"])]
        constraints = [
            models.CheckConstraint(condition=Q(limit_usd__gte=0), name="budget_limit_not_negative"),
            models.UniqueConstraint(fields=["period"], condition=Q(is_global_default=True),
                                    name="one_global_budget_per_period"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_hard(self) -> bool:
        return self.enforcement == self.Enforcement.HARD

    def clean(self):
        required = {self.Scope.TEAM: "team", self.Scope.USER: "user",
                    self.Scope.CATEGORY: "research_category", self.Scope.MODEL: "model_name"}
        field = required.get(self.scope)
        if field and not getattr(self, field if field in ("research_category", "model_name") else f"{field}_id"):
            raise ValidationError({field: f"A {self.get_scope_display().lower()} budget needs a {field}."})
        if self.period == self.Period.FIXED:
            if not (self.starts_on and self.ends_on):
                raise ValidationError({"ends_on": "A fixed-period budget needs a start and an end date."})
            if self.ends_on < self.starts_on:
                raise ValidationError({"ends_on": "The end date is before the start date."})
        if not (0 < self.warning_percentage <= self.critical_percentage <= self.exceeded_percentage):
            raise ValidationError({"critical_percentage": "Thresholds must rise: warning ≤ critical ≤ exceeded."})


class SpendCounter(models.Model):
    """Spend and held reservations of one budget in one period: what an O(1) check reads.

    A budget period is spread over up to SPEND_COUNTER_SLOTS rows (`slot`): each recording adds to
    its own connection's slot, so concurrent recordings do not queue on one row lock until each
    commit is on disk. Its spend is the sum of the slots (budgets.services.budget_states).
    """

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="counters")
    period_key = models.CharField(max_length=16)  # "2025-08-06", "2025-08" or "fixed"
    slot = models.PositiveSmallIntegerField(default=0)
    spent = models.DecimalField(**money_field_kwargs())
    reserved = models.DecimalField(**money_field_kwargs())
    calls = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_key", "slot"], name="unique_counter_slot_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} {self.period_key}[{self.slot}]: {self.spent} (+{self.reserved} held)"


class Reservation(models.Model):
    """A pre-call hold of estimated cost against every applicable budget, settled or released later."""

    class Status(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    operation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reservations")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="reservations")
    estimated_cost = models.DecimalField(**money_field_kwargs())
    operation_type = models.CharField(max_length=100, blank=True, default="")
    research_category = models.CharField(max_length=100, blank=True, default="")
    model_name = models.CharField(max_length=100, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.operation_id} {self.estimated_cost} {self.status}"


class ReservationHold(models.Model):
    """How much of a reservation sits on which counter, so settling undoes exactly what was held."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="holds")
    counter = models.ForeignKey(SpendCounter, on_delete=models.CASCADE, related_name="holds")
    amount = models.DecimalField(**money_field_kwargs())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reservation", "counter"], name="unique_hold")]

    def __str__(self) -> str:
        return f"{self.amount} of {self.reservation_id} on counter {self.counter_id}"
