"""Roles are Django groups. This table is the one place that says what each role may do;
`sync_roles` (run by migration 0002 and after every migrate) makes the groups match it."""

REVIEWER, SUPERVISOR, AUDITOR = "reviewer", "supervisor", "auditor"

_READ = [
    "flows.view_flow",
    "flows.view_document",
    "flows.view_extractedfield",
    "flows.view_crosscheck",
    "flows.view_upload",
]

# Seeing the queues, flow review pages and decisions (read-only).
_REVIEW_READ = [
    "review.view_reviewitem",
    "review.view_flowreview",
    "review.view_decision",
    "review.view_reasoncode",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Claims flows and decides their items.
    REVIEWER: [*_READ, *_REVIEW_READ, "review.decide"],
    # Also releases claims, reopens flows, sees everyone's work and the decision trail.
    SUPERVISOR: [
        *_READ,
        *_REVIEW_READ,
        "review.decide",
        "review.release_claim",
        "review.reopen_flow",
        "review.view_all_work",
        "review.view_decisionevent",
        "audit.export_data",
        "audit.view_all_exports",
        "audit.view_exportjob",
        "overview.view_overview",
    ],
    # Reads everything and exports; decides nothing.
    AUDITOR: [
        *_READ,
        *_REVIEW_READ,
        "review.view_all_work",
        "review.view_decisionevent",
        "audit.export_data",
    ],
}


def sync_roles(apps=None, schema_editor=None) -> None:
    from django.apps import apps as global_apps

    apps = apps or global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is not None:
                wanted.append(found)
        group.permissions.set(wanted)
