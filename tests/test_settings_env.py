"""Settings load from exactly what .env.example says, so copying it to .env is always safe."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
import django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "redis": settings.REDIS_URL,
    "broker": settings.CELERY_BROKER_URL,
    "csrf": settings.CSRF_TRUSTED_ORIGINS,
    "secret_set": bool(settings.SECRET_KEY),
}))
"""


def _env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, flags=re.MULTILINE))


def test_settings_load_from_env_example_with_embedded_defaults(tmp_path):
    variables = _env_example()
    variables["CONVERSA_VAR_DIR"] = str(tmp_path / "var")
    environment = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings", **variables}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "engine": "django.db.backends.sqlite3",
        "redis": "redis://127.0.0.1:6379/0",
        "broker": "redis://127.0.0.1:6379/0",
        "csrf": [],
        "secret_set": True,
    }
