"""README.md and .env.example must name every environment variable the code reads."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# env.str("NAME"...), env.db_url("NAME"...), os.environ.get("NAME"...), os.environ["NAME"]
ENV_READ = re.compile(r"""(?:env\.\w+\(|os\.environ\.get\(|os\.environ\[|os\.getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""")


def _variables_read_by_code() -> set[str]:
    names = set()
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        names |= set(ENV_READ.findall(path.read_text()))
    names.discard("DJANGO_SETTINGS_MODULE")  # Django's own, set by manage.py and asgi.py
    return names


def _variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_code_reads_the_variables_we_expect():
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"} <= _variables_read_by_code()


def test_every_variable_is_in_env_example():
    assert _variables_read_by_code() - _variables_in_env_example() == set()


def test_every_variable_is_in_readme():
    readme = (ROOT / "README.md").read_text()
    missing = {name for name in _variables_in_env_example() if f"`{name}`" not in readme}
    assert missing == set()
