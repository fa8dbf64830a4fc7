"""Top-level routes: the API under /api/v1/, its schema and docs, the portal, the admin, /healthz."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from costmonitor.api import views as api_views
from costmonitor.portal.auth import ThrottledLoginView

handler400 = "costmonitor.api.exceptions.api_aware_400"
handler403 = "costmonitor.api.exceptions.api_aware_403"
handler404 = "costmonitor.api.exceptions.api_aware_404"
handler500 = "costmonitor.api.exceptions.api_aware_500"

api_v1 = [
    path("", include("tracking.urls")),  # first: the most requested routes are matched soonest
    path("", include("costmonitor.api.urls")),
    path("", include("budgets.urls")),
    path("", include("alerts.urls")),
    path("", include("breakers.urls")),
]

urlpatterns = [
    path("healthz", api_views.healthz, name="healthz"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("", include("costmonitor.portal.urls")),
    path("api/v1/<path:unknown>", api_views.api_not_found),
]
