# The queue's age filter ("open items older than a day") as an index range.
#
# CREATE INDEX IF NOT EXISTS: an uncommitted variant (0003_claimed_and_age_indexes) created
# this index in some development and benchmark databases.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('review', '0003_flowreview_claimed_idx'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'CREATE INDEX IF NOT EXISTS "reviewitem_open_age_idx" ON "review_reviewitem" '
                    "(\"queue\", \"created_at\") WHERE \"status\" = 'open'",
                    'DROP INDEX IF EXISTS "reviewitem_open_age_idx"',
                ),
            ],
            state_operations=[
                migrations.AddIndex(
                    model_name='reviewitem',
                    index=models.Index(condition=models.Q(('status', 'open')), fields=['queue', 'created_at'], name='reviewitem_open_age_idx'),
                ),
            ],
        ),
    ]
