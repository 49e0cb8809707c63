"""Settings for the benchmarks' own processes (sync_bench's Celery worker and its parent):
the project's settings, with the cache under a private key prefix, so that a Redis database
shared with other runs never mixes their keys (tokens, locks) with ours."""

import os

from atlas_review.settings import *  # noqa: F403
from atlas_review.settings import CACHES

CACHES["default"]["KEY_PREFIX"] = os.getenv("PERF_CACHE_PREFIX", "atlas_perf")
