"""Alert channel administration with an audit trail: deleting a channel (the portal and the API call it).

Kept beside alerts.services rather than in it: that module is about raising and delivering alerts.
"""

from __future__ import annotations

from django.db import transaction

from budgets.models import AuditLog

from .models import AlertChannel


def channel_delete(*, channel: AlertChannel, actor) -> None:
    """Delete a channel (audited). Its undelivered deliveries go with it; its past attempts stay for the
    statistics, under the channel's name."""
    with transaction.atomic():
        AuditLog.objects.create(actor=actor if actor is not None and actor.is_authenticated else None,
                                action="alert_channel.deleted", object_type="AlertChannel", object_id=str(channel.pk),
                                changes={"name": [channel.name, None], "kind": [channel.kind, None]})
        channel.delete()
