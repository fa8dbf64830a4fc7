"""Portal login. django-axes locks out repeated failures (counted in the database, shared by all processes)."""

from django.contrib.auth import views as auth_views


class ThrottledLoginView(auth_views.LoginView):
    redirect_authenticated_user = True
