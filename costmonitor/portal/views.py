"""Portal pages. Thin: read through portal.selectors (the apps' selectors), write through the apps'
services, and say what happened with django.contrib.messages. Admin-only pages answer 403."""

from __future__ import annotations

import csv
import json
import re
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.http import require_POST

from alerts import selectors as alert_selectors
from alerts import services as alert_services
from alerts.models import AlertChannel, AlertDelivery
from breakers import selectors as breaker_selectors
from breakers import services as breaker_services
from breakers.models import CircuitBreaker
from budgets import accounts, analytics
from budgets import selectors as budget_selectors
from budgets import services as budget_services
from budgets.models import ApiKey
from costmonitor.api.permissions import user_has
from costmonitor.api.scoping import visible_team_ids
from costmonitor.errors import InvalidParameters

from . import charts, selectors
from .forms import (
    AlertFilterForm,
    ApiKeyForm,
    BreakerForm,
    BudgetForm,
    ChannelForm,
    ReportForm,
    RuleForm,
    RuleFormSet,
    UsageFilterForm,
)

PAGE_SIZE = 50


def role_required(codename: str):
    """Logged in and holding `budgets.<codename>`; anyone else gets the portal's 403 page."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_has(request.user, codename):
                return render(request, "portal/forbidden.html", {"page": ""}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class CappedPaginator(Paginator):
    """Counts at most `cap` + 1 rows: COUNT(*) over a million usage records costs more than the page
    itself, and nobody pages past record 10,000 (they narrow the filters instead)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


def _page(request, items, size: int = PAGE_SIZE, paginator=Paginator):
    return paginator(items, size).get_page(request.GET.get("page"))


def _query_without_page(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- Overview ---------------------------------------------------------------------------------

@role_required("read_budgets")
def overview(request):
    data = selectors.overview(user=request.user)
    report = data["report"]
    models = [(k, v["cost"]) for k, v in report["model_breakdown"].items()]
    categories = [(k, v["cost"]) for k, v in report["category_breakdown"].items()]
    hours = list(report["hourly_distribution"].items())
    chart_list = [
        {"key": "daily", "title": "Daily spend, last 30 days", "x_label": "Day", "rows": data["series"],
         "svg": charts.line_chart(
             title="Daily spend, last 30 days",
             desc="Spend per day with the daily budget as a horizontal line and a 7-day forecast as a dashed line.",
             series=data["series"], budget=data["daily_limit"], forecast=data["forecast"])},
        {"key": "models", "title": "Spend by model", "x_label": "Model", "rows": models,
         "svg": charts.bar_chart(title="Spend by model, last 30 days", desc="Total spend per model, largest first.",
                                 items=models)},
        {"key": "categories", "title": "Spend by research category", "x_label": "Research category",
         "rows": categories,
         "svg": charts.bar_chart(title="Spend by research category, last 30 days",
                                 desc="Total spend per research category, largest first.", items=categories)},
        {"key": "hours", "title": "Spend by hour of day", "x_label": "Hour", "rows": hours,
         "svg": charts.column_chart(title="Spend by hour of day, last 30 days",
                                    x_label="Hour of day (budget time zone)",
                                    desc="Total spend in each local hour of the day (the budget time zone) "
                                         "over the last 30 days.",
                                    items=hours)},
    ]
    return render(request, "portal/overview.html", {"page": "overview", **data, "chart_list": chart_list})


# --- Budgets ----------------------------------------------------------------------------------

@role_required("read_budgets")
def budget_list(request):
    page = _page(request, budget_selectors.budgets_visible(user=request.user).order_by("scope", "name", "pk"), 25)
    rows = selectors.budget_rows(page.object_list)
    return render(request, "portal/budgets/list.html", {
        "page": "budgets", "rows": rows, "page_obj": page, "query": _query_without_page(request),
        "can_modify": user_has(request.user, "modify_budgets")})


@role_required("modify_budgets")
def budget_create(request):
    form = BudgetForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                budget = budget_services.budget_create(actor=request.user, **form.service_fields())
            except (ValidationError, InvalidParameters) as error:
                _form_error(form, error)
            else:
                messages.success(request, f"Budget “{budget.name}” created.")
                return redirect("portal:budgets")
        messages.error(request, "The budget was not saved: please correct the fields marked below.")
    return render(request, "portal/budgets/form.html", {"page": "budgets", "form": form, "budget": None})


@role_required("modify_budgets")
def budget_edit(request, pk: int):
    budget = get_object_or_404(budget_selectors.budgets_visible(user=request.user), pk=pk)
    # The form validates on a copy: ModelForm writes into its instance, and the service must see
    # the old values to record what changed.
    form = BudgetForm(request.POST or None, instance=type(budget).objects.get(pk=pk))
    if request.method == "POST":
        if form.is_valid():
            try:
                budget_services.budget_update(budget=budget, actor=request.user, **form.service_fields())
            except (ValidationError, InvalidParameters) as error:
                _form_error(form, error)
            else:
                messages.success(request, f"Budget “{budget.name}” saved.")
                return redirect("portal:budgets")
        messages.error(request, "The budget was not saved: please correct the fields marked below.")
    return render(request, "portal/budgets/form.html", {"page": "budgets", "form": form, "budget": budget})


@role_required("modify_budgets")
def budget_delete(request, pk: int):
    budget = get_object_or_404(budget_selectors.budgets_visible(user=request.user), pk=pk)
    if request.method == "POST":
        try:
            budget_services.budget_delete(budget=budget, actor=request.user)
        except InvalidParameters as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"Budget “{budget.name}” deleted.")
        return redirect("portal:budgets")
    return render(request, "portal/budgets/delete.html", {"page": "budgets", "budget": budget})


def _form_error(form, error) -> None:
    """Put a service's refusal on the form, on the field it names when the form has that field."""
    if isinstance(error, ValidationError):
        found = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    else:
        found = error.details or {None: [error.message]}
    for field, errors in found.items():
        form.add_error(field if field in form.fields else None, errors)


# --- Usage explorer ---------------------------------------------------------------------------

USAGE_CSV_COLUMNS = [
    ("occurred_at", "occurred_at"), ("team", "team.name"), ("user", "user.username"),
    ("operation_name", "operation_name"), ("operation_type", "operation_type"), ("model_name", "model_name"),
    ("research_category", "research_category"), ("prompt_tokens", "prompt_tokens"),
    ("completion_tokens", "completion_tokens"), ("total_tokens", "total_tokens"), ("cost_usd", "cost_usd"),
    ("response_time_ms", "response_time_ms"), ("success", "success"), ("error_type", "error_type"),
    ("experiment", "experiment"), ("run_id", "run_id"), ("id", "id"),
]


def _usage_records(request):
    form = UsageFilterForm(request.GET or None, user=request.user)
    filters = form.cleaned_data if form.is_valid() else {}
    return form, selectors.usage_filtered(user=request.user, filters=filters)


@role_required("read_budgets")
def usage(request):
    form, records = _usage_records(request)
    if form.is_bound and form.errors:
        messages.error(request, "Some filters were not understood and are ignored: see the marked fields.")
    page = _page(request, records, paginator=CappedPaginator)
    query = _query_without_page(request)
    return render(request, "portal/usage.html", {
        "page": "usage", "form": form, "page_obj": page, "query": query,
        "export_url": reverse("portal:usage-export") + (f"?{query}" if query else "")})


class _Echo:
    def write(self, value):
        return value


def _csv_value(record, path: str):
    value = record
    for part in path.split("."):
        value = getattr(value, part)
    # Pipelines choose model names, categories, operation names…: the report's rule keeps their text
    # from running as a spreadsheet formula.
    return value.isoformat() if hasattr(value, "isoformat") else analytics._cell(value)


@role_required("read_budgets")
def usage_export(request):
    """The filtered records as CSV, streamed in chunks (a million rows never sit in memory)."""
    form, records = _usage_records(request)
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow([name for name, _ in USAGE_CSV_COLUMNS])
        for record in records.iterator(chunk_size=2000):
            yield writer.writerow([_csv_value(record, path) for _, path in USAGE_CSV_COLUMNS])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="usage.csv"'
    return response


# --- API keys ---------------------------------------------------------------------------------

@role_required("track_costs")
def api_keys(request):
    form = ApiKeyForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST":
        if form.is_valid():
            api_key, raw_key = accounts.api_key_create(user=request.user, name=form.cleaned_data["name"],
                                                       team=form.cleaned_data["team"])
            created = {"key": api_key, "raw": raw_key}
            messages.success(request, f"API key “{api_key.name}” created. Copy it now: it is shown only once.")
            form = ApiKeyForm(user=request.user)
        else:
            messages.error(request, "The key was not created: please correct the fields marked below.")
    keys = _page(request, ApiKey.objects.filter(user=request.user).select_related("team"), 25)
    response = render(request, "portal/api_keys.html", {"page": "keys", "form": form, "page_obj": keys,
                                                        "created": created, "query": ""})
    response["Cache-Control"] = "no-store"  # the page may hold a raw key
    return response


@require_POST
@role_required("track_costs")
def api_key_revoke(request, pk: int):
    api_key = get_object_or_404(ApiKey, pk=pk, user=request.user)
    if api_key.revoked_at:
        messages.info(request, f"API key “{api_key.name}” was already revoked.")
    else:
        accounts.api_key_revoke(api_key=api_key, actor=request.user)
        messages.success(request, f"API key “{api_key.name}” revoked: it no longer authenticates.")
    return redirect("portal:api-keys")


# --- Reports ----------------------------------------------------------------------------------

def _report(request):
    form = ReportForm(request.GET or ReportForm.last_days())
    if not form.is_valid():
        return form, None
    try:
        return form, selectors.cost_report(user=request.user, start=form.cleaned_data["start"],
                                           end=form.cleaned_data["end"])
    except InvalidParameters as error:  # e.g. dates the report cannot reach (the last day of year 9999)
        form.add_error(None, error.message)
        return form, None


@role_required("read_budgets")
def reports(request):
    form, report = _report(request)
    chart = None
    if report is None:
        messages.error(request, "The report range is not valid: see the marked fields.")
    else:
        chart = charts.line_chart(title="Daily spend in the report range",
                                  desc="Spend per day between the chosen dates.",
                                  series=list(report["cost_report"]["daily_costs"].items()))
    query = f"start={form.data.get('start', '')}&end={form.data.get('end', '')}"
    return render(request, "portal/reports.html", {"page": "reports", "form": form, "report": report,
                                                   "chart": chart, "query": query})


@role_required("read_budgets")
def report_download(request, fmt: str):
    """The report as the API serves it (GET /api/v1/reports/costs?format=json|csv), for the session user."""
    form, report = _report(request)
    if report is None:
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    start, end = form.cleaned_data["start"], form.cleaned_data["end"]
    if fmt == "json":
        response = HttpResponse(json.dumps(report, indent=2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="costmonitor-report-{start}-{end}.json"'
        return response
    filename, lines = selectors.cost_report_csv(user=request.user, start=start, end=end)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Alerts -----------------------------------------------------------------------------------

@role_required("read_budgets")
def alerts(request):
    form = AlertFilterForm(request.GET or None)
    filters = {k: v for k, v in form.cleaned_data.items() if v} if form.is_valid() else {}
    try:
        found = alert_selectors.alerts_for_user(request.user, filters)
    except InvalidParameters as error:
        _form_error(form, error)
        messages.error(request, error.message)
        found = alert_selectors.alerts_for_user(request.user, {})
    return render(request, "portal/alerts/list.html", {
        "page": "alerts", "form": form, "page_obj": _page(request, found), "query": _query_without_page(request),
        "can_manage": user_has(request.user, "manage_alerts"), "my_team_ids": visible_team_ids(request.user) or []})


@require_POST
@role_required("read_budgets")
def alert_acknowledge(request, pk: int):
    alert = get_object_or_404(alert_selectors.alerts_visible_to(request.user), pk=pk)
    if not alert_selectors.can_acknowledge(request.user, alert):
        raise PermissionDenied("Organisation-wide alerts are acknowledged by admins.")
    already = alert.acknowledged_at is not None
    alert = alert_services.alert_acknowledge(alert=alert, user=request.user)
    if already:
        messages.info(request, f"This alert was already acknowledged by {alert.acknowledged_by}.")
    else:
        messages.success(request, "Alert acknowledged.")
    query = request.POST.get("query", "")  # only ever a query string on our own list page
    return redirect(reverse("portal:alerts") + (f"?{query}" if query else ""))


@role_required("manage_alerts")
def channels(request):
    results = None
    if request.method == "POST":  # "Test every active channel"
        results = alert_services.channels_test()
        failed = [name for name, result in results.items() if not result["success"]]
        if failed:
            messages.error(request, f"Test sent; failed on: {', '.join(failed)}.")
        else:
            messages.success(request, f"Test sent to {len(results)} channel{'s' if len(results) != 1 else ''}.")
    rows = [{"channel": c, "config": alert_selectors.channel_dict(c)["config"],
             "attempts": alert_selectors.channel_results(c, limit=3)}
            for c in AlertChannel.objects.prefetch_related("teams", "budgets").order_by("name")]
    return render(request, "portal/alerts/channels.html", {"page": "alerts", "rows": rows, "results": results})


@require_POST
@role_required("manage_alerts")
def channel_test(request, pk: int):
    channel = get_object_or_404(AlertChannel, pk=pk)
    result = alert_services.channel_test(channel)
    if result["success"]:
        messages.success(request, f"Test to “{channel.name}” delivered in {result['response_time_ms']} ms: "
                                  f"{result.get('message', '')}")
    else:
        messages.error(request, f"Test to “{channel.name}” failed after {result['response_time_ms']} ms: "
                                f"{result['error']}")
    return redirect("portal:channels")


@role_required("manage_alerts")
def channel_edit(request, pk: int | None = None):
    channel = get_object_or_404(AlertChannel, pk=pk) if pk else None
    form = ChannelForm(request.POST or None, initial=ChannelForm.initial_for(channel) if channel else None)
    if request.method == "POST":
        if form.is_valid():
            try:
                saved = alert_services.channel_save(channel=channel, actor=request.user, data=form.service_data())
            except InvalidParameters as error:
                _form_error(form, _config_error(error))
            else:
                messages.success(request, f"Channel “{saved.name}” saved. Press “Send test” to check it.")
                return redirect("portal:channels")
        messages.error(request, "The channel was not saved: please correct the fields marked below.")
    return render(request, "portal/alerts/channel_form.html", {"page": "alerts", "form": form, "channel": channel})


UNDELIVERED = (AlertDelivery.Status.PENDING, AlertDelivery.Status.SENDING)


@role_required("manage_alerts")
def channel_delete(request, pk: int):
    channel = get_object_or_404(AlertChannel, pk=pk)
    if request.method == "POST":
        alert_services.channel_delete(channel=channel, actor=request.user)
        messages.success(request, f"Channel “{channel.name}” deleted.")
        return redirect("portal:channels")
    return render(request, "portal/alerts/channel_delete.html", {
        "page": "alerts", "channel": channel,
        "undelivered": channel.deliveries.filter(status__in=UNDELIVERED).count()})


def _config_error(error: InvalidParameters) -> InvalidParameters:
    """alerts.channels names config fields "config.url": put them on the form's "url" field."""
    details = {key.removeprefix("config."): problems for key, problems in (error.details or {}).items()}
    return InvalidParameters(error.message, details=details)


# --- Breakers ---------------------------------------------------------------------------------

@role_required("read_budgets")
def breakers(request):
    page = _page(request, breaker_selectors.breakers_with_rules(), 20)
    return render(request, "portal/breakers/list.html", {
        "page": "breakers", "page_obj": page, "query": "", "counts": breaker_selectors.breakers_state_counts(),
        "can_modify": user_has(request.user, "modify_budgets")})


@role_required("read_budgets")
def breaker_detail(request, name: str):
    detail = breaker_selectors.breaker_detail(name)
    if detail is None:
        raise Http404("No circuit breaker has this name.")
    statistics = [(key.replace("_", " ").capitalize(), value) for key, value in detail["status"]["statistics"].items()]
    return render(request, "portal/breakers/detail.html", {
        "page": "breakers", **detail, "statistics": statistics, "can_modify": user_has(request.user, "modify_budgets")})


def _rules_from(formset) -> list[dict]:
    return [form.service_fields() for form in formset.forms
            if form.has_changed() and not form.cleaned_data.get("DELETE")]


def _breaker_form(request, breaker=None):
    initial_rules = [{name: getattr(rule, name) for name in RuleForm.Meta.fields}
                     for rule in breaker.rules.all()] if breaker else []
    form = BreakerForm(request.POST or None, instance=breaker)
    rules = RuleFormSet(request.POST or None, initial=initial_rules, prefix="rules")
    if request.method == "POST":
        if form.is_valid() and rules.is_valid():
            fields = {name: form.cleaned_data[name] for name in BreakerForm.Meta.fields}
            try:
                if breaker is None:
                    saved = breaker_services.breaker_create(actor=request.user, rules=_rules_from(rules), **fields)
                else:
                    saved = breaker_services.breaker_update(breaker=breaker, actor=request.user,
                                                            rules=_rules_from(rules), **fields)
            except InvalidParameters as error:
                _breaker_errors(form, rules, error)
            else:
                done = "created" if breaker is None else "saved"
                messages.success(request, f"Circuit breaker “{saved.name}” {done}.")
                return redirect("portal:breaker-detail", name=saved.name)
        messages.error(request, "The circuit breaker was not saved: please correct the fields marked below.")
    return render(request, "portal/breakers/form.html", {"page": "breakers", "form": form, "rules": rules,
                                                         "breaker": breaker})


def _breaker_errors(form, rules, error: InvalidParameters) -> None:
    """Map the service's `rules[i].field` details back onto the formset's forms."""
    kept = [f for f in rules.forms if f.has_changed() and not f.cleaned_data.get("DELETE")]
    for key, problems in (error.details or {None: [error.message]}).items():
        match = re.match(r"rules\[(\d+)\]\.(\w+)", key or "")
        if match and int(match[1]) < len(kept):
            target, field = kept[int(match[1])], match[2]
            target.add_error(field if field in target.fields else None, problems)
        else:
            form.add_error(key if key in form.fields else None, problems)


@role_required("modify_budgets")
def breaker_create(request):
    return _breaker_form(request)


@role_required("modify_budgets")
def breaker_edit(request, name: str):
    return _breaker_form(request, get_object_or_404(CircuitBreaker, name=name))


@require_POST
@role_required("modify_budgets")
def breaker_reset(request, name: str):
    try:
        breaker = breaker_services.breaker_reset(breaker_name=name, actor=request.user,
                                                 clear_statistics=request.POST.get("clear_statistics") == "on")
    except breaker_services.BreakerNotFound:
        raise Http404("No circuit breaker has this name.") from None
    messages.success(request, f"Circuit breaker “{breaker.name}” reset: it is closed again.")
    return redirect("portal:breaker-detail", name=breaker.name)
