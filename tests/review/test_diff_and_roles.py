import pytest
from django.contrib.auth.models import Group

from atlas_review.review.diff import diff_pair
from atlas_review.review.roles import ROLE_PERMISSIONS


def test_words_differ_in_text_and_characters_in_numbers():
    assert diff_pair("Pashangh", "Pashangh Irani") == ("Pashangh", "Pashangh<ins> Irani</ins>")
    assert diff_pair("8655126210", "8655126219") == (
        "865512621<del>0</del>",
        "865512621<ins>9</ins>",
    )


def test_values_are_escaped_before_marking():
    source, target = diff_pair("<b>A & B</b>", "<b>A & C</b>")

    assert "<b>" not in source and "&lt;b&gt;" in source
    assert "&amp;" in target and "<ins>C&lt;/b&gt;</ins>" in target


def test_lists_numbers_and_empty_values_read_as_shown():
    assert diff_pair(["36732632"], 36732632) == ("36732632", "36732632")
    assert diff_pair("", "x") == ("", "<ins>x</ins>")
    assert diff_pair(None, None) == ("", "")


@pytest.mark.django_db
def test_the_roles_are_groups_with_exactly_their_permissions():
    for role, perms in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        have = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")
        }
        assert have == set(perms), role
    reviewer, auditor = set(ROLE_PERMISSIONS["reviewer"]), set(ROLE_PERMISSIONS["auditor"])
    assert "review.decide" in reviewer and "review.decide" not in auditor
    assert "review.release_claim" not in reviewer
