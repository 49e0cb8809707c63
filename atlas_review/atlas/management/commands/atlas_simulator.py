"""`python manage.py atlas_simulator`: a local Atlas for demos and manual testing.

Runs in the foreground until Ctrl-C (or SIGTERM, for containers), one log line per request.
Credentials default to the ones the dashboard itself uses (settings ATLAS_CLIENT_ID/SECRET
for the API, ATLAS_CALLBACK_CLIENT_ID/SECRET for what the simulator presents at our
auth_url), so `runserver` and this command work together without configuration. Secrets
and tokens are never printed.
"""

from __future__ import annotations

import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from atlas_review.atlas.simulator import Knobs, start_simulator


def _terminate(signum, frame):
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the Atlas API simulator (v3 flows and v1 docstream) until Ctrl-C."
    requires_system_checks: list[str] = []  # needs no database and no app checks

    def add_arguments(self, parser):
        defaults = Knobs()
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--token-ttl", type=float, default=defaults.token_ttl)
        parser.add_argument("--processing-seconds", type=float, default=defaults.processing_seconds)
        parser.add_argument("--error-rate", type=float, default=0.0, help="share of 500/503s")
        parser.add_argument("--latency-ms", type=int, default=0)
        parser.add_argument("--rate-limit-every", type=int, default=0, help="every Nth call 429")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share of FAILED flows")
        parser.add_argument("--stuck-rate", type=float, default=0.0, help="share never finishing")
        parser.add_argument("--no-callbacks", action="store_true", help="never call back")
        parser.add_argument("--client-id", default=None, help="default: ATLAS_CLIENT_ID")
        parser.add_argument("--client-secret", default=None, help="default: ATLAS_CLIENT_SECRET")
        parser.add_argument(
            "--callback-client-id", default=None, help="default: ATLAS_CALLBACK_CLIENT_ID"
        )
        parser.add_argument(
            "--callback-client-secret", default=None, help="default: ATLAS_CALLBACK_CLIENT_SECRET"
        )
        parser.add_argument("--v1-auth-url", default="", help="auth_url for v1 batch callbacks")
        parser.add_argument("--v1-callback-url", default="", help="callback_url for v1 batches")

    def handle(self, *args, **opts):
        defaults = Knobs()
        knobs = {
            "seed": opts["seed"],
            "token_ttl": opts["token_ttl"],
            "processing_seconds": opts["processing_seconds"],
            "error_rate": opts["error_rate"],
            "latency_ms": opts["latency_ms"],
            "rate_limit_every": opts["rate_limit_every"],
            "fail_rate": opts["fail_rate"],
            "stuck_rate": opts["stuck_rate"],
            "callbacks": not opts["no_callbacks"],
            "client_id": opts["client_id"] or settings.ATLAS_CLIENT_ID,
            "client_secret": opts["client_secret"] or settings.ATLAS_CLIENT_SECRET,
            "callback_client_id": opts["callback_client_id"]
            or settings.ATLAS_CALLBACK_CLIENT_ID
            or defaults.callback_client_id,
            "callback_client_secret": opts["callback_client_secret"]
            or settings.ATLAS_CALLBACK_CLIENT_SECRET
            or defaults.callback_client_secret,
            "v1_auth_url": opts["v1_auth_url"],
            "v1_callback_url": opts["v1_callback_url"],
        }
        # One line per request even when the project's LOG_LEVEL is quieter.
        logging.getLogger("atlas_review.atlas.simulator").setLevel(logging.INFO)
        try:
            sim = start_simulator(port=opts["port"], host=opts["host"], **knobs)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot listen on {opts['host']}:{opts['port']}: {exc}") from None

        shown = {k: v for k, v in sim.knobs.public().items() if "secret" not in k}
        self.stdout.write(f"Atlas simulator listening on {sim.url}")
        self.stdout.write(f"  v3 (flows):     {sim.v3_url}")
        self.stdout.write(f"  v1 (docstream): {sim.v1_url}")
        self.stdout.write(f"  scans:          {sim.url}/files/<application_id>-<doctype>.svg")
        self.stdout.write(
            f"  control:        {sim.url}/_sim/stats, /_sim/knobs, /_sim/expire-tokens"
        )
        self.stdout.write("  knobs: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        self.stdout.write("Ctrl-C to stop.")
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            sim.wait()
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            signal.signal(signal.SIGTERM, previous)
            sim.stop()
