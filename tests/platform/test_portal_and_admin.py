"""The portal shell (login, logout, password change, lockout, overview), the browsable API for
session users, and the Django admin for teams, users, memberships and API keys."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from budgets import accounts
from budgets.models import ApiKey, Membership

pytestmark = pytest.mark.django_db


def log_in(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_overview_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_login_leads_to_the_overview_with_navigation(client, researcher):
    response = log_in(client, "rita", "pw-rita-123")
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Welcome, rita" in html
    assert 'aria-label="Main"' in html and "Log out" in html


def test_wrong_password_shows_the_form_again(client, researcher):
    response = log_in(client, "rita", "wrong")
    assert response.status_code == 200
    assert "didn't match" in response.content.decode()
    assert client.get("/").status_code == 302


def test_logout_ends_the_session(client, researcher):
    log_in(client, "rita", "pw-rita-123")
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_password_change(client, researcher):
    log_in(client, "rita", "pw-rita-123")
    response = client.post("/accounts/password/", {"old_password": "pw-rita-123", "new_password1": "a-new-Secret-42",
                                                   "new_password2": "a-new-Secret-42"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/done/"
    assert "Password changed" in client.get("/accounts/password/done/").content.decode()
    researcher.refresh_from_db()
    assert researcher.check_password("a-new-Secret-42")


def test_password_change_needs_login(client):
    assert client.get("/accounts/password/")["Location"].startswith("/accounts/login/")


def test_repeated_failed_logins_lock_the_account_out(client, researcher, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "rita", "wrong")
    locked = log_in(client, "rita", "pw-rita-123")  # even the right password, for now
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert client.get("/").status_code == 302


def test_lockout_is_recorded_in_the_database_for_every_process(client, researcher, settings):
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "rita", "wrong")
    assert AccessAttempt.objects.filter(username="rita").get().failures_since_start == settings.AXES_FAILURE_LIMIT
    other_process = Client()
    assert log_in(other_process, "rita", "pw-rita-123").status_code == 429


def test_browsable_api_works_for_a_session_user(client, researcher):
    client.force_login(researcher)
    response = client.get("/api/v1/system/health", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "&quot;status&quot;: &quot;success&quot;" in response.content.decode()


@pytest.mark.parametrize(("accept", "query", "expected"), [
    ("", "", "application/json"), ("*/*", "", "application/json"), ("application/json", "", "application/json"),
    ("text/html,application/xhtml+xml,*/*;q=0.8", "", "text/html"), ("*/*", "?format=api", "text/html"),
    ("*/*", "?format=json", "application/json")])
def test_api_clients_get_json_and_browsers_the_browsable_api(client, researcher, accept, query, expected):
    client.force_login(researcher)
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = client.get(f"/api/v1/system/health{query}", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(expected)


def test_an_unsatisfiable_accept_header_is_refused(client, researcher):
    client.force_login(researcher)
    assert client.get("/api/v1/system/health", HTTP_ACCEPT="image/png").status_code == 406


def test_session_writes_to_the_api_need_the_csrf_token(researcher):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(researcher)
    response = browser.post("/api/v1/api-keys/", {"name": "from the browser"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert not ApiKey.objects.filter(name="from the browser").exists()


@pytest.fixture
def admin_browser(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("page", ["/admin/budgets/team/", "/admin/budgets/membership/", "/admin/auth/user/",
                                  "/admin/budgets/apikey/", "/admin/budgets/auditlog/"])
def test_admin_lists_teams_users_memberships_keys_and_audit_log(admin_browser, researcher, page):
    accounts.api_key_create(user=researcher, name="listed key")
    response = admin_browser.get(page)
    assert response.status_code == 200, page


def test_admin_team_page_edits_memberships_inline(admin_browser, team, researcher):
    html = admin_browser.get(f"/admin/budgets/team/{team.pk}/change/").content.decode()
    assert "memberships-TOTAL_FORMS" in html
    assert "rita" in html


def test_admin_user_page_shows_the_users_teams(admin_browser, researcher):
    html = admin_browser.get(f"/admin/auth/user/{researcher.pk}/change/").content.decode()
    assert "memberships-TOTAL_FORMS" in html


def test_admin_key_page_shows_the_hash_read_only_and_no_add(admin_browser, researcher):
    api_key, raw_key = accounts.api_key_create(user=researcher, name="read only")
    html = admin_browser.get(f"/admin/budgets/apikey/{api_key.pk}/change/").content.decode()
    assert api_key.key_hash in html
    assert 'name="key_hash"' not in html
    assert raw_key not in html
    assert admin_browser.get("/admin/budgets/apikey/add/").status_code == 403


def test_admin_revoke_action_stops_the_key_at_once(admin_browser, researcher_client):
    api_key = ApiKey.objects.get(prefix=researcher_client.raw_key[:11])
    assert researcher_client.get("/api/v1/system/health").status_code == 200
    response = admin_browser.post("/admin/budgets/apikey/", {"action": "revoke_keys",
                                                             "_selected_action": [api_key.pk]})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert researcher_client.get("/api/v1/system/health").status_code == 401


def test_admin_can_delete_a_user_with_keys(admin_browser, researcher):
    accounts.api_key_create(user=researcher, name="goes with the user")
    response = admin_browser.post(f"/admin/auth/user/{researcher.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user_id=researcher.pk).exists()


def test_researcher_cannot_open_the_admin(client, researcher):
    client.force_login(researcher)
    assert client.get("/admin/budgets/team/")["Location"].startswith("/admin/login/")
