"""`lightrag-budget`: the command line for budgets and spend, a client of the CostMonitor API.

    lightrag-budget status
    lightrag-budget overview --format json
    lightrag-budget report --start 2025-08-01 --end 2025-08-06 [--format csv]
    lightrag-budget set-budget --daily 75 --monthly 1500
    lightrag-budget config set COSTMONITOR_API_KEY cm_...
    lightrag-budget config show

Settings come from the command line, then the environment (`COSTMONITOR_URL`,
`COSTMONITOR_API_KEY`, …), then the config file in the user's config directory (mode 600; the
API keys in it are encrypted with Fernet, the key in a separate mode-600 file, and shown masked).

Exit codes: 0 ok, 1 server or unexpected error, 2 bad input, 3 server unreachable,
4 authentication failed, 5 permission denied, 6 budget exceeded, 7 rate limited.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from costmonitor import __version__
from costmonitor.sdk.client import CostMonitorClient
from costmonitor.sdk.exceptions import (
    AuthenticationError,
    BudgetExceededException,
    ConfigurationError,
    CostMonitorError,
    InvalidParametersError,
    MonitorUnavailableError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitExceeded,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_FORBIDDEN = 5
EXIT_BUDGET = 6
EXIT_RATE_LIMITED = 7

SECRET_KEYS = frozenset({"COSTMONITOR_API_KEY", "OPENAI_API_KEY"})
CONFIG_KEYS: dict[str, str] = {
    "COSTMONITOR_URL": "Server address, e.g. https://costmonitor.example.org",
    "COSTMONITOR_API_KEY": "Your CostMonitor API key (stored encrypted)",
    "OPENAI_API_KEY": "Your OpenAI API key, for pipelines on this machine (stored encrypted)",
    "DAILY_BUDGET_LIMIT": "Default daily limit (USD) for `set-budget`",
    "MONTHLY_BUDGET_LIMIT": "Default monthly limit (USD) for `set-budget`",
    "COSTMONITOR_TIMEOUT": "Request timeout in seconds (default 5)",
    "COSTMONITOR_FAIL_OPEN": "Allow operations when the server is unreachable: true (default) or false",
    "DEFAULT_RESEARCH_CATEGORY": "Research category used when a pipeline names none",
}
_ALIASES = {"API_KEY": "COSTMONITOR_API_KEY", "URL": "COSTMONITOR_URL", "TIMEOUT": "COSTMONITOR_TIMEOUT"}


class UsageError(Exception):
    """Bad input on the command line: exit code 2."""


# --- configuration file ---------------------------------------------------------------------------

def config_dir() -> Path:
    """`COSTMONITOR_CONFIG_DIR`, else the platform's per-user config directory."""
    if os.environ.get("COSTMONITOR_CONFIG_DIR"):
        return Path(os.environ["COSTMONITOR_CONFIG_DIR"])
    if sys.platform.startswith("win"):
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "costmonitor"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "costmonitor"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "costmonitor"


class ConfigStore:
    """`config.json` (mode 600) with secrets encrypted by the Fernet key in `secret.key` (mode 600)."""

    def __init__(self, directory: Path | None = None):
        self.directory = directory or config_dir()
        self.path = self.directory / "config.json"
        self.key_path = self.directory / "secret.key"

    def _ensure_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.chmod(self.directory, 0o700)
        except OSError:
            pass

    def _fernet(self, *, create: bool):
        from cryptography.fernet import Fernet

        if not self.key_path.exists():
            if not create:
                return None
            self._ensure_dir()
            try:
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # made by a concurrent run: use theirs
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(Fernet.generate_key())
        return Fernet(self.key_path.read_bytes().strip())

    def load_raw(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"Cannot read {self.path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _write(self, data: Mapping[str, Any]) -> None:
        self._ensure_dir()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".config-", suffix=".json")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(dict(data), handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        os.chmod(self.path, 0o600)

    def get(self, key: str) -> str | None:
        value = self.load_raw().get(key)
        if value is None:
            return None
        if isinstance(value, dict) and "encrypted" in value:
            fernet = self._fernet(create=False)
            if fernet is None:
                raise ConfigurationError(f"{key} is encrypted but {self.key_path} is missing; set it again.")
            from cryptography.fernet import InvalidToken

            try:
                return fernet.decrypt(value["encrypted"].encode()).decode()
            except InvalidToken as exc:
                raise ConfigurationError(f"{key} cannot be decrypted with {self.key_path}; set it again.") from exc
        return str(value)

    def set(self, key: str, value: str) -> None:
        data = self.load_raw()
        if key in SECRET_KEYS:
            data[key] = {"encrypted": self._fernet(create=True).encrypt(value.encode()).decode()}
        else:
            data[key] = value
        self._write(data)

    def unset(self, key: str) -> bool:
        data = self.load_raw()
        if key not in data:
            return False
        del data[key]
        self._write(data)
        return True

    def items(self) -> list[tuple[str, str]]:
        return [(key, self.get(key) or "") for key in sorted(self.load_raw())]


def mask(secret: str) -> str:
    """`cm_Ab…wxyz`: enough to recognise a key, not to use it."""
    if len(secret) <= 12:
        return "*" * len(secret)
    return f"{secret[:5]}{'*' * 8}{secret[-4:]}"


def _normalise_key(key: str) -> str:
    key = key.strip().upper()
    key = _ALIASES.get(key, key)
    if key not in CONFIG_KEYS:
        raise UsageError(f"unknown setting {key!r}; known settings: {', '.join(CONFIG_KEYS)}")
    return key


def _validate(key: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise UsageError(f"{key} cannot be empty (use `config unset {key}` to remove it)")
    if key == "COSTMONITOR_URL":
        if not value.startswith(("http://", "https://")):
            raise UsageError("COSTMONITOR_URL must start with http:// or https://")
        return value.rstrip("/")
    if key in ("DAILY_BUDGET_LIMIT", "MONTHLY_BUDGET_LIMIT"):
        return str(_money(value, key))
    if key == "COSTMONITOR_TIMEOUT":
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 300:
            raise UsageError("COSTMONITOR_TIMEOUT must be a number of seconds between 0 and 300")
        return value
    if key == "COSTMONITOR_FAIL_OPEN":
        if value.lower() not in ("true", "false"):
            raise UsageError("COSTMONITOR_FAIL_OPEN must be true or false")
        return value.lower()
    return value


def _money(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise UsageError(f"{what} must be a number of US dollars, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"{what} must be a non-negative number of US dollars, got {value!r}")
    return amount


# --- settings resolution ------------------------------------------------------------------------

def _setting(args: argparse.Namespace, store: ConfigStore, key: str) -> str | None:
    flag = {"COSTMONITOR_URL": "url", "COSTMONITOR_TIMEOUT": "timeout"}.get(key)
    if flag and getattr(args, flag, None) is not None:
        return str(getattr(args, flag))
    if os.environ.get(key):
        return os.environ[key]
    return store.get(key)


def _client(args: argparse.Namespace, store: ConfigStore, *, buffer: bool = False) -> CostMonitorClient:
    api_key = _setting(args, store, "COSTMONITOR_API_KEY")
    if not api_key:
        raise AuthenticationError("No API key configured. Run `lightrag-budget config set COSTMONITOR_API_KEY "
                                  "<key>` or set COSTMONITOR_API_KEY.")
    timeout = _setting(args, store, "COSTMONITOR_TIMEOUT")
    fail_open = _setting(args, store, "COSTMONITOR_FAIL_OPEN")
    return CostMonitorClient(
        _setting(args, store, "COSTMONITOR_URL"), api_key, timeout=float(timeout) if timeout else None,
        fail_open=None if fail_open is None else fail_open.lower() == "true", buffer=buffer,
        background_flush=False, default_research_category=_setting(args, store, "DEFAULT_RESEARCH_CATEGORY"))


# --- output -----------------------------------------------------------------------------------

_MONEY_WORDS = ("cost", "budget", "limit", "spend", "spent", "remaining", "saved", "savings", "reserved",
                "projected", "average", "total_usd")
_NOT_MONEY_WORDS = ("calls", "count", "tokens", "_ms", "days", "hours", "operations", "alerts", "breakers",
                    "percent", "rate", "score", "confidence", "time")


def _is_money(name: str) -> bool:
    name = name.lower()
    if name == "id" or name.endswith("_id"):
        return False
    return any(w in name for w in _MONEY_WORDS) and not any(w in name for w in _NOT_MONEY_WORDS)


def _format_value(key: str, value: Any, money: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    name = key.lower()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if ("time" in name or name.endswith("_at")) and "_ms" not in name and isinstance(value, float) \
                and value > 1e9:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if "percent" in name or name.endswith("_rate"):
            return f"{value:,.1f}%"
        if money or _is_money(name):
            return f"${value:,.2f}" if abs(value) >= 0.01 or value == 0 else f"${value:,.6f}"
        if isinstance(value, float):
            return f"{value:,.2f}"
        return f"{value:,}"
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _title(key: str) -> str:
    return key.replace("_", " ").strip().capitalize()


def _is_data_mapping(key: str, value: Mapping[str, Any]) -> bool:
    """A breakdown keyed by data (categories, models, days, hours) rather than by field names."""
    name = key.lower()
    if any(str(k).startswith("by_") for k in value):  # a grouping of breakdowns, keyed by field names
        return False
    return name.startswith("by_") or name.endswith(("_breakdown", "_costs", "_distribution", "_categories")) \
        or name in ("categories", "models", "channels", "circuit_breakers", "components")


def render_table(data: Any, title: str | None = None) -> str:
    """A terminal-readable view of an answer: aligned key/value rows, a section per nested object,
    a column table per list of objects."""
    lines: list[str] = []
    money_context = [False]

    def section(name: str) -> None:
        if lines:
            lines.append("")
        lines.append(name)
        lines.append("-" * len(name))

    def rows(mapping: Mapping[str, Any], heading: str | None, data_keys: bool = False) -> None:
        # data_keys: the keys are data (categories, models, days), shown as they are; values are money
        # when the mapping's own name says so (cost_breakdown, daily_costs…).
        scalars = [(k, v) for k, v in mapping.items() if not isinstance(v, (dict, list)) or
                   (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))]
        nested = [(k, v) for k, v in mapping.items() if (k, v) not in scalars]
        if heading is not None and (scalars or not nested):
            section(heading)
        label = (lambda k: str(k)) if data_keys else _title
        width = max((len(label(k)) for k, _ in scalars), default=0)
        for k, v in scalars:
            lines.append(f"  {label(k).ljust(width)}  {_format_value(k, v, money=data_keys and money_context[-1])}")
        if heading is not None and not scalars and not nested:
            lines.append("  (none)")
        for k, v in nested:
            name = f"{heading} / {label(k)}" if heading else label(k)
            if isinstance(v, dict) and _is_data_mapping(k, v) and v and all(
                    isinstance(x, dict) and all(not isinstance(y, (dict, list)) for y in x.values())
                    for x in v.values()):
                # {model: {calls, cost}, …} reads best as one table with a row per model.
                table([{"name": str(key), **value} for key, value in v.items()], name)
            elif isinstance(v, dict):
                keyed_by_data = _is_data_mapping(k, v)
                money_context.append(_is_money(k) or (money_context[-1] and data_keys))
                rows(v, name, keyed_by_data)
                money_context.pop()
            else:
                table(v, name)

    def table(items: list[Any], heading: str) -> None:
        section(heading)
        dicts = [item for item in items if isinstance(item, dict)]
        if not dicts:
            lines.append("  (none)")
            return
        columns: list[str] = []
        for item in dicts:
            columns.extend(k for k in item if k not in columns and not isinstance(item[k], (dict, list)))
        cells = [[_format_value(c, item.get(c)) for c in columns] for item in dicts]
        widths = [max(len(_title(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        lines.append("  " + "  ".join(_title(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
        lines.append("  " + "  ".join("-" * w for w in widths))
        for row in cells:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))

    if isinstance(data, dict) and len(data) == 1 and title and _title(next(iter(data))) == title.capitalize():
        data = next(iter(data.values()))  # {"cost_report": {...}} under the title "Cost report"
    if isinstance(data, dict):
        rows(data, title)
    elif isinstance(data, list):
        table(data, title or "Items")
    else:
        lines.append(str(data))
    return "\n".join(line.rstrip() for line in lines)


def _emit(data: Any, fmt: str, title: str) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        print(render_table(data, title))


# --- commands ---------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace, store: ConfigStore) -> int:
    with _client(args, store) as client:
        data = client.get_budget_status(include_projections=not args.no_projections)
    _emit(data, args.format, "Budget status")
    return EXIT_OK


def cmd_overview(args: argparse.Namespace, store: ConfigStore) -> int:
    with _client(args, store) as client:
        data = client.get_dashboard_overview()
    _emit(data, args.format, "Dashboard overview")
    return EXIT_OK


def _date_arg(value: str) -> str:
    """YYYY-MM-DD or a full ISO 8601 time."""
    text = value.strip()
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
    return text


def cmd_report(args: argparse.Namespace, store: ConfigStore) -> int:
    if args.start and args.end and args.start[:10] > args.end[:10]:
        raise UsageError("--start is after --end")
    with _client(args, store) as client:
        data = client.get_cost_report(start_date=args.start, end_date=args.end, format=args.format)
    if args.format == "csv":
        text = data if isinstance(data, str) else json.dumps(data)
        if args.output:
            Path(args.output).write_text(text)
            print(f"Report written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return EXIT_OK
    if args.output:
        Path(args.output).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"Report written to {args.output}", file=sys.stderr)
    elif args.table:
        print(render_table(data, "Cost report"))
    else:
        print(json.dumps(data, indent=2, default=str))
    return EXIT_OK


def cmd_set_budget(args: argparse.Namespace, store: ConfigStore) -> int:
    daily = args.daily if args.daily is not None else store.get("DAILY_BUDGET_LIMIT")
    monthly = args.monthly if args.monthly is not None else store.get("MONTHLY_BUDGET_LIMIT")
    if daily is None and monthly is None:
        raise UsageError("give --daily, --monthly or both (or `config set DAILY_BUDGET_LIMIT …` first)")
    daily = _money(daily, "--daily") if daily is not None else None
    monthly = _money(monthly, "--monthly") if monthly is not None else None
    with _client(args, store) as client:
        data = client.update_budget_limits(daily_budget=daily, monthly_budget=monthly)
    changed = ", ".join(f"{name} ${amount:,.2f}" for name, amount in (("daily", daily), ("monthly", monthly))
                        if amount is not None)
    print(f"Budget limits updated: {changed}.")
    if args.format == "json":
        print(json.dumps(data, indent=2, default=str))
    elif isinstance(data, dict) and data:
        print(render_table(data, "Budget limits"))
    return EXIT_OK


def cmd_check(args: argparse.Namespace, store: ConfigStore) -> int:
    cost = _money(args.cost, "--cost")
    with _client(args, store) as client:
        data = client.check_budget_status(cost, args.operation_type, args.category)
    _emit(data, args.format, "Budget check")
    return EXIT_OK if data.get("operation_allowed", True) else EXIT_BUDGET


def cmd_outbox(args: argparse.Namespace, store: ConfigStore) -> int:
    with _client(args, store, buffer=True) as client:
        if args.flush:
            delivered = client.flush(timeout=60)
            print("All waiting records delivered." if delivered else "Some records still wait (server unreachable?).")
        print(f"Waiting records: {client.pending_records}")
        print(f"Dropped because the outbox was full: {client.dropped_records}")
        print(f"Outbox file: {client.outbox.path}")
        return EXIT_OK if not args.flush or client.pending_records == 0 else EXIT_UNREACHABLE


def cmd_config_set(args: argparse.Namespace, store: ConfigStore) -> int:
    key = _normalise_key(args.key)
    value = sys.stdin.readline().rstrip("\n") if args.value == "-" else args.value
    value = _validate(key, value)
    store.set(key, value)
    shown = mask(value) if key in SECRET_KEYS else value
    print(f"{key} = {shown}" + ("  (encrypted)" if key in SECRET_KEYS else ""))
    print(f"Saved in {store.path}")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace, store: ConfigStore) -> int:
    stored = dict(store.items())
    width = max(len(k) for k in CONFIG_KEYS)
    print(f"Config file: {store.path}")
    for key in CONFIG_KEYS:
        source = None
        value = None
        if os.environ.get(key):
            value, source = os.environ[key], "environment"
        elif key in stored:
            value, source = stored[key], "config file" + (", encrypted" if key in SECRET_KEYS else "")
        if value is None:
            print(f"  {key.ljust(width)}  (not set)")
            continue
        shown = mask(value) if key in SECRET_KEYS else value
        print(f"  {key.ljust(width)}  {shown}  [{source}]")
    return EXIT_OK


def cmd_config_get(args: argparse.Namespace, store: ConfigStore) -> int:
    key = _normalise_key(args.key)
    value = os.environ.get(key) or store.get(key)
    if value is None:
        print(f"{key} is not set", file=sys.stderr)
        return EXIT_ERROR
    print(value if (args.reveal or key not in SECRET_KEYS) else mask(value))
    return EXIT_OK


def cmd_config_unset(args: argparse.Namespace, store: ConfigStore) -> int:
    key = _normalise_key(args.key)
    print(f"{key} removed" if store.unset(key) else f"{key} was not set")
    return EXIT_OK


def cmd_config_path(args: argparse.Namespace, store: ConfigStore) -> int:
    print(store.path)
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightrag-budget",
        description="See and manage LLM API spend on a CostMonitor server.",
        epilog="Settings: --url / COSTMONITOR_URL, COSTMONITOR_API_KEY, or `lightrag-budget config set`. "
               "Exit codes: 0 ok, 1 error, 2 bad input, 3 unreachable, 4 bad key, 5 forbidden, "
               "6 budget exceeded, 7 rate limited.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--url", help="CostMonitor server address (overrides COSTMONITOR_URL and the config)")
    parser.add_argument("--timeout", type=float, help="request timeout in seconds (default 5)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    def fmt(p: argparse.ArgumentParser, default: str = "table") -> None:
        p.add_argument("--format", choices=["table", "json"], default=default,
                       help=f"output format (default {default})")

    p = commands.add_parser("status", help="today's and this month's spend against the budgets",
                            description="Show the budget status: daily and monthly spend, limits, health.")
    fmt(p)
    p.add_argument("--no-projections", action="store_true", help="leave out the cost projections")
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser("overview", help="the dashboard overview (metrics, health, alerts, trends)",
                            description="Show the dashboard overview.")
    fmt(p)
    p.set_defaults(handler=cmd_overview)

    p = commands.add_parser("report", help="cost report for a date range (JSON or CSV)",
                            description="Cost report between two dates (inclusive), as JSON or CSV.")
    p.add_argument("--start", type=_date_arg, required=True, help="first day, YYYY-MM-DD (or ISO 8601 time)")
    p.add_argument("--end", type=_date_arg, required=True, help="last day, YYYY-MM-DD (or ISO 8601 time)")
    p.add_argument("--format", choices=["json", "csv"], default="json", help="report format (default json)")
    p.add_argument("--table", action="store_true", help="show a JSON report as tables instead")
    p.add_argument("--output", "-o", help="write the report to this file instead of the terminal")
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser("set-budget", help="change the daily and/or monthly budget limit (admin)",
                            description="Change the organisation's daily and/or monthly budget limits (needs "
                                        "an admin's key). Without a flag, DAILY_BUDGET_LIMIT / "
                                        "MONTHLY_BUDGET_LIMIT from the config are used.")
    p.add_argument("--daily", help="daily limit in USD, e.g. 75.0")
    p.add_argument("--monthly", help="monthly limit in USD, e.g. 1500.0")
    fmt(p)
    p.set_defaults(handler=cmd_set_budget)

    p = commands.add_parser("check", help="would an operation of a given cost fit the budgets?",
                            description="Check the budget for an operation (no hold). Exit code 6 if denied.")
    p.add_argument("--cost", required=True, help="estimated cost in USD")
    p.add_argument("--operation-type", default="llm_call", help="operation type (default llm_call)")
    p.add_argument("--category", help="research category")
    fmt(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser("outbox", help="records waiting on this machine to be sent (and --flush them)",
                            description="Show the SDK's outbox of unsent records for this server and key.")
    p.add_argument("--flush", action="store_true", help="resend the waiting records now")
    p.set_defaults(handler=cmd_outbox)

    config = commands.add_parser("config", help="show or change the stored settings",
                                 description="Settings stored in " + str(config_dir() / "config.json") +
                                             " (mode 600; API keys encrypted). Known settings: " +
                                             ", ".join(CONFIG_KEYS))
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_commands.required = True
    c = config_commands.add_parser("set", help="store a setting (VALUE '-' reads it from standard input)",
                                   description="Store a setting. Known: " + "; ".join(
                                       f"{k}: {v}" for k, v in CONFIG_KEYS.items()))
    c.add_argument("key", metavar="KEY")
    c.add_argument("value", metavar="VALUE")
    c.set_defaults(handler=cmd_config_set)
    c = config_commands.add_parser("show", help="show every setting (secrets masked) and where it comes from",
                                   description="Show the settings; API keys are masked.")
    c.set_defaults(handler=cmd_config_show)
    c = config_commands.add_parser("get", help="print one setting (secrets masked unless --reveal)",
                                   description="Print one setting's value.")
    c.add_argument("key", metavar="KEY")
    c.add_argument("--reveal", action="store_true", help="print a secret in full (e.g. for `export`)")
    c.set_defaults(handler=cmd_config_get)
    c = config_commands.add_parser("unset", help="remove a setting", description="Remove a stored setting.")
    c.add_argument("key", metavar="KEY")
    c.set_defaults(handler=cmd_config_unset)
    c = config_commands.add_parser("path", help="print the config file's path", description="Print the path.")
    c.set_defaults(handler=cmd_config_path)
    return parser


def _fail(message: str, code: int, exc: CostMonitorError | None = None) -> int:
    print(f"lightrag-budget: error: {message}", file=sys.stderr)
    if exc is not None and exc.details:
        for field, problem in exc.details.items():
            print(f"  {field}: {problem}", file=sys.stderr)
    if exc is not None and exc.request_id:
        print(f"  (request id {exc.request_id})", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    store = ConfigStore()
    try:
        return args.handler(args, store)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except MonitorUnavailableError as exc:
        return _fail(f"cannot reach the CostMonitor server: {exc}. Is it running? Check --url / COSTMONITOR_URL.",
                     EXIT_UNREACHABLE)
    except AuthenticationError as exc:
        return _fail(f"authentication failed: {exc} Check COSTMONITOR_API_KEY "
                     "(`lightrag-budget config set COSTMONITOR_API_KEY <key>`).", EXIT_AUTH, exc)
    except PermissionDeniedError as exc:
        return _fail(f"permission denied: {exc} (this needs a role your key's owner does not have)",
                     EXIT_FORBIDDEN, exc)
    except BudgetExceededException as exc:
        return _fail(f"budget exceeded: {exc}", EXIT_BUDGET, exc)
    except RateLimitExceeded as exc:
        wait = f" Retry after {exc.retry_after_seconds:g} seconds." if exc.retry_after_seconds else ""
        return _fail(f"rate limited: {exc}{wait}", EXIT_RATE_LIMITED, exc)
    except InvalidParametersError as exc:
        return _fail(f"invalid input: {exc}", EXIT_USAGE, exc)
    except NotFoundError as exc:
        return _fail(f"not found: {exc} (is the server a CostMonitor of this version?)", EXIT_ERROR, exc)
    except ConfigurationError as exc:
        return _fail(f"configuration error: {exc}", EXIT_USAGE if exc.status_code is None else EXIT_ERROR, exc)
    except CostMonitorError as exc:
        return _fail(f"{exc.code}: {exc}", EXIT_ERROR, exc)
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
