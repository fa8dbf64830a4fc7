"""What each channel kind is configured with: validation, the secret/plain split, and masking.

The API and the admin take one `config` object per channel (the reference's EmailAlertConfig and
SlackAlertConfig fields); secret keys are split off into the encrypted column and only ever
returned masked. Sending back a masked value (or leaving a secret out) keeps the stored one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from costmonitor.errors import InvalidParameters

from .http import UnsafeDestination, url_validate_for_saving
from .models import AlertChannel, AlertLevel

MASK = "********"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# kind → (plain keys with their defaults, secret keys, required keys)
SPECS: dict[str, tuple[dict, tuple[str, ...], tuple[str, ...]]] = {
    AlertChannel.Kind.EMAIL: ({"smtp_server": "", "smtp_port": 587, "username": "", "sender_email": "",
                               "recipient_emails": [], "use_tls": True, "use_ssl": False},
                              ("password",), ("recipient_emails",)),
    AlertChannel.Kind.SLACK: ({"channel": "", "username": ""}, ("webhook_url",), ("webhook_url",)),
    AlertChannel.Kind.WEBHOOK: ({}, ("url", "secret"), ("url",)),
    AlertChannel.Kind.LOG: ({"log_level": ""}, (), ()),
}
URL_SECRETS = ("webhook_url", "url")


def _fail(key: str, message: str):
    raise InvalidParameters(message, field=f"config.{key}")


def _clean_plain(kind: str, key: str, value):
    if key in ("smtp_server", "username", "channel"):
        if not isinstance(value, str) or len(value) > 200:
            _fail(key, "A text of at most 200 characters.")
        return value.strip()
    if key == "smtp_port":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            _fail(key, "A port number between 1 and 65535.")
        return value
    if key in ("use_tls", "use_ssl"):
        if not isinstance(value, bool):
            _fail(key, "true or false.")
        return value
    if key == "sender_email":
        if value:
            try:
                validate_email(value)
            except ValidationError:
                _fail(key, "Not an email address.")
        return value or ""
    if key == "recipient_emails":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not value or len(value) > 50:
            _fail(key, "A list of 1 to 50 email addresses.")
        for address in value:
            try:
                validate_email(address)
            except ValidationError:
                _fail(key, f"{address!r} is not an email address.")
        return list(dict.fromkeys(value))
    if key == "log_level":
        level = str(value or "").upper()
        if level and level not in LOG_LEVELS:
            _fail(key, f"One of {', '.join(LOG_LEVELS)}, or empty to follow the alert's level.")
        return level
    return value


def _clean_secret(key: str, value) -> str:
    if not isinstance(value, str) or len(value) > 2000:
        _fail(key, "A text of at most 2000 characters.")
    value = value.strip()
    if key in URL_SECRETS and value:
        try:
            url_validate_for_saving(value)
        except UnsafeDestination as exc:
            _fail(key, str(exc))
    return value


def channel_config_clean(*, kind: str, config: dict | None, existing_config: dict | None = None,
                         existing_secrets: dict | None = None) -> tuple[dict, dict]:
    """Validate a channel's config; returns (plain config, secrets). Missing or masked secrets are kept."""
    if kind not in SPECS:
        raise InvalidParameters(f"Unknown channel kind {kind!r}.", field="kind")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise InvalidParameters("An object.", field="config")
    defaults, secret_keys, required = SPECS[kind]
    unknown = set(config) - set(defaults) - set(secret_keys)
    if unknown:
        _fail(sorted(unknown)[0], f"Unknown setting for a {kind} channel.")
    plain = {**defaults, **{k: v for k, v in (existing_config or {}).items() if k in defaults}}
    for key in defaults:
        if key in config:
            plain[key] = _clean_plain(kind, key, config[key])
    secrets = {k: v for k, v in (existing_secrets or {}).items() if k in secret_keys}
    for key in secret_keys:
        sent_back_masked = key in secrets and config.get(key) == mask_secret(key, secrets[key])
        if key not in config or sent_back_masked:
            continue
        value = config[key]
        if value in (None, ""):
            secrets.pop(key, None)
        else:
            secrets[key] = _clean_secret(key, value)
    for key in required:
        if not (plain.get(key) if key in defaults else secrets.get(key)):
            _fail(key, f"A {kind} channel needs {key}.")
    if kind == AlertChannel.Kind.EMAIL and plain["use_tls"] and plain["use_ssl"]:
        _fail("use_ssl", "Use either STARTTLS (use_tls) or SSL (use_ssl), not both.")
    return plain, secrets


def levels_clean(levels) -> list[str]:
    if levels in (None, ""):
        return []
    if isinstance(levels, str):
        levels = [v.strip() for v in levels.split(",") if v.strip()]
    if not isinstance(levels, list):
        raise InvalidParameters("A list of levels.", field="levels")
    valid = set(AlertLevel.values)
    for level in levels:
        if level not in valid:
            raise InvalidParameters(f"{level!r} is not one of {', '.join(AlertLevel.values)}.", field="levels")
    return sorted(set(levels), key=AlertLevel.values.index)


def mask_secret(key: str, value: str) -> str:
    if not value:
        return ""
    if key in URL_SECRETS:
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname}/{MASK}" if parts.hostname else MASK
    return MASK


def config_for_display(channel: AlertChannel) -> dict:
    """The channel's config with secrets masked: safe to return from the API or show in the admin."""
    defaults, secret_keys, _ = SPECS.get(channel.kind, ({}, (), ()))
    shown = {**defaults, **(channel.config or {})}
    for key in secret_keys:
        shown[key] = mask_secret(key, channel.secrets.get(key, ""))
    return shown
