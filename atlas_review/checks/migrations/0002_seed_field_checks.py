"""Default checks for the document types Atlas returns for consumer-durable loans.
Administrators edit them in the admin afterwards; this only adds missing rows."""

from django.db import migrations

DEFAULTS = [
    ("AADHAAR", "aadhaar_number", "aadhaar"),
    ("PAN", "pan_number", "pan"),
    ("INVOICE", "dealer_gst", "gstin"),
    ("IMEI_CLOSEUP_IMAGE", "imei_number", "imei"),
    ("INVOICE", "imei_number", "imei"),
    ("AADHAAR", "date_of_birth", "date_of_birth"),
    ("PAN", "date_of_birth", "date_of_birth"),
    ("INVOICE", "invoice_date", "document_date"),
    ("DELIVERY_ORDER", "do_date", "document_date"),
    ("INVOICE", "total_invoice_amount", "amount"),
    ("DELIVERY_ORDER", "loan_amount", "amount"),
    ("INVOICE", "mobile_number", "mobile"),
    ("DELIVERY_ORDER", "customer_mobile_number", "mobile"),
]


def seed(apps, schema_editor):
    FieldCheck = apps.get_model("checks", "FieldCheck")
    for document_type, field_name, code in DEFAULTS:
        FieldCheck.objects.get_or_create(
            document_type=document_type, field_name=field_name, check_code=code
        )


def unseed(apps, schema_editor):
    FieldCheck = apps.get_model("checks", "FieldCheck")
    for document_type, field_name, code in DEFAULTS:
        FieldCheck.objects.filter(
            document_type=document_type, field_name=field_name, check_code=code
        ).delete()


class Migration(migrations.Migration):
    dependencies = [("checks", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
