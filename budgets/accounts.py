"""Services for people and access: users with roles and teams, API keys (create, verify, revoke).

A verified key is cached by its hash, with its owner and the owner's default team (the hot path
reads no database row for them). Anything that changes a key, its owner or the owner's teams evicts
that entry at once: revocation here, and the signal receivers at the bottom for edits made
elsewhere (the Django admin, a deactivated user, a deleted key, a membership added or removed).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from costmonitor.cache import cache_get_shared
from costmonitor.errors import InvalidParameters
from costmonitor.near_cache import NearCache

from .models import ApiKey, AuditLog, Membership, Team

ROLES = ("researcher", "admin")
_near_keys = NearCache("api-keys", ttl=60)
KEY_PREFIX = "cm_"
_KEY_CACHE_SECONDS = 300
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def user_provision(*, username: str, role: str, team_name: str | None = None, password: str | None = None,
                   email: str = ""):
    """Create or update a user with exactly one role and (optionally) membership of a team.

    Admins are also staff and superusers: they run the Django admin (teams, users, keys), which
    needs Django's model permissions beyond the four roles' ones.
    """
    if role not in ROLES:
        raise InvalidParameters(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}.", field="role")
    User = get_user_model()
    with transaction.atomic():
        user, _created = User.objects.get_or_create(username=username, defaults={"email": email})
        if email:
            user.email = email
        user.is_staff = user.is_superuser = role == "admin"
        if password is not None:
            user.set_password(password)
        user.save()
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        user.groups.add(Group.objects.get(name=role))
        if team_name:
            team, _ = Team.objects.get_or_create(name=team_name)
            Membership.objects.get_or_create(user=user, team=team)
    return user


def api_key_create(*, user, name: str, team: Team | None = None) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(user=user, team=team, name=name[:100] or "API key",
                                    prefix=raw_key[:11], key_hash=hash_key(raw_key))
    AuditLog.objects.create(actor=user, action="api_key.created", object_type="ApiKey",
                            object_id=str(api_key.pk), changes={"name": api_key.name, "prefix": api_key.prefix})
    return api_key, raw_key


def api_key_authenticate(*, raw_key: str):
    """Return (user, api_key) for an active key, else None. Cached by hash, in Redis and in each
    process (the near cache, kept true over pub/sub); revocation evicts both. The objects are shared
    by the process's requests with this key: read-only."""
    key_hash = hash_key(raw_key)
    found = _near_keys.get(key_hash)
    if found is None:
        token = _near_keys.token()
        found = _key_lookup(key_hash)
        if found is None:
            return None
        _near_keys.put(key_hash, found, token)
    user, api_key = found
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        # Written at most once a minute per key: last-used is for humans, not for the hot path.
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
        cache.set(_cache_key(key_hash), (user, api_key), _KEY_CACHE_SECONDS)
    return user, api_key


def _key_lookup(key_hash: str):
    """(user, api_key) from the shared cache, else from the database (then cached), else None."""
    found = cache_get_shared(_cache_key(key_hash))
    if found is None:
        api_key = (ApiKey.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True).first())
        if api_key is None:
            return None
        _default_team_load(api_key.user)
        if not api_key.user.is_superuser:
            # Loaded now, cached with the user: every request checks a role permission, which would
            # otherwise cost two queries each time (superusers, the admins, are allowed without them).
            api_key.user.get_all_permissions()
        found = (api_key.user, api_key)
        cache.set(_cache_key(key_hash), found, _KEY_CACHE_SECONDS)
    return found


def api_key_revoke(*, api_key: ApiKey, actor) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        api_key_cache_evict(key_hashes=[api_key.key_hash])
        AuditLog.objects.create(actor=actor, action="api_key.revoked", object_type="ApiKey",
                                object_id=str(api_key.pk), changes={"prefix": api_key.prefix})
    return api_key


def team_for_recording(*, user, api_key: ApiKey | None = None, team_id: int | None = None) -> Team:
    """The team a record or reservation is booked to: explicit (if allowed), the key's, or the user's first."""
    from costmonitor.api.scoping import is_admin

    if team_id is not None:
        team = Team.objects.filter(pk=team_id).first()
        if team is None or (not is_admin(user) and not Membership.objects.filter(user=user, team=team).exists()):
            raise InvalidParameters("Unknown team, or you are not a member of it.", field="team")
        return team
    if api_key is not None and api_key.team_id:
        # A key made for a team stops booking to it once its owner leaves the team.
        if not is_admin(user) and api_key.team_id not in _team_ids(user):
            raise InvalidParameters("This key's team is not one of your teams any more; ask an admin, or use "
                                    "another key.", field="team")
        return api_key.team
    team = getattr(user, "_default_team", None) or _default_team_load(user)
    if team is None:
        raise InvalidParameters("You belong to no team; ask an admin to add you to one.", field="team")
    return team


def _default_team_load(user) -> Team | None:
    """The user's first team (by id) and the ids of all their teams, remembered on the user object
    (which the key cache keeps; a membership change evicts it)."""
    memberships = list(Membership.objects.filter(user=user).select_related("team").order_by("team_id"))
    user._team_ids = frozenset(m.team_id for m in memberships)
    user._default_team = memberships[0].team if memberships else None
    return user._default_team


def _team_ids(user) -> frozenset:
    if getattr(user, "_team_ids", None) is None:
        _default_team_load(user)
    return user._team_ids


def api_key_cache_evict(*, key_hashes) -> None:
    """Forget cached keys everywhere: in Redis and in every process's near cache. Now, and again when
    the surrounding transaction commits: a lookup in between would read (and cache) the old row."""
    key_hashes = list(key_hashes)
    if not key_hashes:
        return

    def evict():
        cache.delete_many([_cache_key(key_hash) for key_hash in key_hashes])
        _near_keys.evict(key_hashes)

    evict()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(evict)


def _evict_changed_key(sender, instance, **kwargs):
    api_key_cache_evict(key_hashes=[instance.key_hash])


def _evict_keys_of_changed_user(sender, instance, **kwargs):
    # On delete the keys are already gone (cascade); their own post_delete evicted them.
    api_key_cache_evict(key_hashes=ApiKey.objects.filter(user_id=instance.pk).values_list("key_hash", flat=True))


def _evict_keys_of_users(user_ids) -> None:
    api_key_cache_evict(key_hashes=ApiKey.objects.filter(user_id__in=list(user_ids)).values_list("key_hash", flat=True))


def _evict_keys_of_member(sender, instance, **kwargs):
    # The cached entry carries the owner's default team: a membership change may change it.
    _evict_keys_of_users([instance.user_id])


def _evict_keys_of_members_changed(sender, instance, action, pk_set, **kwargs):
    # team.members.add(…) / user.teams.remove(…) write memberships without their save/delete signals.
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if isinstance(instance, Team):
        _evict_keys_of_users(pk_set if action != "pre_clear" else instance.members.values_list("pk", flat=True))
    else:
        _evict_keys_of_users([instance.pk])


def _evict_keys_of_role_changed(sender, instance, action, pk_set, model, **kwargs):
    """A user's groups or permissions, or a group's permissions, changed (from either side): the
    cached owners carry their permissions (api_key_authenticate)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    User = get_user_model()
    if isinstance(instance, User):
        _evict_keys_of_users([instance.pk])
        return
    if action == "pre_clear":  # what is about to be removed is still there to be found
        related = sender.objects.filter(**{f"{_side(sender, type(instance))}_id": instance.pk})
        pk_set = set(related.values_list(f"{_side(sender, model)}_id", flat=True))
    if model is User:
        users = User.objects.filter(pk__in=pk_set)
    elif model is Group:
        users = User.objects.filter(groups__in=pk_set)
    else:  # a group's permissions
        users = User.objects.filter(groups=instance)
    _evict_keys_of_users(users.values_list("pk", flat=True))


def _side(through, model) -> str:
    """The name of the through model's foreign key to `model` (user, group or permission)."""
    return next(f.name for f in through._meta.fields if f.is_relation and f.related_model is model)


# Connected on import: this module is imported by the admin registrations (at start-up, through
# admin autodiscovery) and by the API-key authentication, so every process that could change or
# verify a key has them.
post_save.connect(_evict_changed_key, sender=ApiKey, dispatch_uid="accounts.evict_changed_key")
post_delete.connect(_evict_changed_key, sender=ApiKey, dispatch_uid="accounts.evict_deleted_key")
post_save.connect(_evict_keys_of_changed_user, sender=get_user_model(),
                  dispatch_uid="accounts.evict_keys_of_changed_user")
post_save.connect(_evict_keys_of_member, sender=Membership, dispatch_uid="accounts.evict_keys_of_new_member")
post_delete.connect(_evict_keys_of_member, sender=Membership, dispatch_uid="accounts.evict_keys_of_former_member")
m2m_changed.connect(_evict_keys_of_members_changed, sender=Membership,
                    dispatch_uid="accounts.evict_keys_of_members_changed")
for _through in (get_user_model().groups.through, get_user_model().user_permissions.through, Group.permissions.through):
    m2m_changed.connect(_evict_keys_of_role_changed, sender=_through,
                        dispatch_uid=f"accounts.evict_keys_of_role_changed.{_through._meta.label}")
