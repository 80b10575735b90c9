from contextlib import contextmanager

import pytest
from django.db import IntegrityError, connection, transaction


@contextmanager
def refused_by_database():
    """Expect the database to refuse what the block writes.

    The cross-organization keys are deferred to commit, so they are checked here at once.
    """
    with pytest.raises(IntegrityError), transaction.atomic():  # noqa: PT012 (the block is the caller's)
        yield
        _deferred_constraints_check()


def _deferred_constraints_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
