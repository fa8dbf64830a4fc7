"""The bench server's settings: the project's, with bench.reference's URLconf (one route added)."""

from costmonitor.settings import *  # noqa: F403

ROOT_URLCONF = "bench.reference"
