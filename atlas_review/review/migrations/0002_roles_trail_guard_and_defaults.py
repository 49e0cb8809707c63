"""Roles as groups, the append-only guard on the decision trail, and starting lists.

- Groups reviewer/supervisor/auditor with the permissions of roles.ROLE_PERMISSIONS. The
  permissions of this app's models do not exist yet during the first migrate (Django adds
  them in post_migrate), so they are created here first.
- A trigger refuses UPDATE and DELETE on review_decisionevent, whatever the client (the
  model refuses them too; this also stops raw SQL and other programs).
- A few reason codes and mandatory fields, which administrators edit in the admin.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REASONS = [
    ("illegible", "Document illegible or cut off", 10),
    ("mismatch", "Value does not match the document", 20),
    ("wrong-document", "Wrong or missing document", 30),
    ("suspected-tampering", "Suspected tampering or forgery", 40),
    ("other", "Other (explain in the comment)", 90),
]

MANDATORY = [
    ("INVOICE", "invoice_number"),
    ("INVOICE", "total_invoice_amount"),
    ("INVOICE", "customer_name"),
    ("DELIVERY_ORDER", "customer_name"),
    ("DELIVERY_ORDER", "loan_amount"),
    ("AADHAAR", "aadhaar_number"),
    ("PAN", "pan_number"),
    ("IMEI_CLOSEUP_IMAGE", "imei_number"),
]

PG_GUARD = """
CREATE OR REPLACE FUNCTION review_decisionevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'review_decisionevent is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER review_decisionevent_append_only
    BEFORE UPDATE OR DELETE ON review_decisionevent
    FOR EACH ROW EXECUTE FUNCTION review_decisionevent_append_only();
"""
PG_UNGUARD = """
DROP TRIGGER IF EXISTS review_decisionevent_append_only ON review_decisionevent;
DROP FUNCTION IF EXISTS review_decisionevent_append_only();
"""
SQLITE_GUARD = [
    """CREATE TRIGGER review_decisionevent_no_update BEFORE UPDATE ON review_decisionevent
       BEGIN SELECT RAISE(ABORT, 'review_decisionevent is append-only'); END""",
    """CREATE TRIGGER review_decisionevent_no_delete BEFORE DELETE ON review_decisionevent
       BEGIN SELECT RAISE(ABORT, 'review_decisionevent is append-only'); END""",
]
SQLITE_UNGUARD = [
    "DROP TRIGGER IF EXISTS review_decisionevent_no_update",
    "DROP TRIGGER IF EXISTS review_decisionevent_no_delete",
]


def guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_GUARD, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_GUARD:
            schema_editor.execute(sql, params=None)


def unguard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_UNGUARD, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_UNGUARD:
            schema_editor.execute(sql, params=None)


def create_roles(apps, schema_editor):
    from atlas_review.review.roles import sync_roles

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_roles(apps, schema_editor)


def seed(apps, schema_editor):
    ReasonCode = apps.get_model("review", "ReasonCode")
    MandatoryField = apps.get_model("review", "MandatoryField")
    for code, label, order in REASONS:
        ReasonCode.objects.get_or_create(code=code, defaults={"label": label, "order": order})
    for document_type, field_name in MANDATORY:
        MandatoryField.objects.get_or_create(document_type=document_type, field_name=field_name)


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(guard, unguard),
        migrations.RunPython(create_roles, migrations.RunPython.noop),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
