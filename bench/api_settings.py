"""Settings of bench/api.py's server: Conversa's, plus the benchmark's URLs (bench/api_urls.py)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.api_urls"
