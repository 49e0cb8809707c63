"""Settings for the Celery workers and beats the fault tests start: the test settings, with
the poll interval and broker timings read from the environment so a test can make them short.

tests.settings pins ATLAS_POLL_INTERVAL_SECONDS to 0 (every sweep polls every flow), which
would hide what the claims do; production's defaults are 7 s polls and a 3600 s visibility
timeout."""

from tests.settings import *  # noqa: F403
from tests.settings import envint

ATLAS_POLL_INTERVAL_SECONDS = envint("ATLAS_POLL_INTERVAL_SECONDS", "7")
# Redis redelivers a killed worker's unacked tasks once they are older than the visibility
# timeout; the restore scan normally runs every 100 s, here every second.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", "3600"),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
