import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The cache outlives a test (tokens, throttles, cached figures): start each one empty."""
    from django.core.cache import cache

    cache.clear()
    yield


CONTRACT_EXAMPLE = Path(__file__).parent / "data" / "contract_callback.json"


@pytest.fixture
def contract_payload() -> dict:
    """The CallbackData example from the Atlas contract, verbatim."""
    return json.loads(CONTRACT_EXAMPLE.read_text())


def make_user(username: str, *groups: str, **extra) -> User:
    user = User.objects.create_user(username, password="pw-" + username, **extra)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def reviewer(db) -> User:
    return make_user("rita", "reviewer")


@pytest.fixture
def supervisor(db) -> User:
    return make_user("sam", "supervisor")


@pytest.fixture
def auditor(db) -> User:
    return make_user("aud", "auditor")


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client
