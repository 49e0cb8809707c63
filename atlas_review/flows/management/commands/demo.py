"""`make run`: the whole product on one machine with no services.

Starts the Atlas simulator, creates a demo login and demo applications *through the real
client and sync code*, keeps a poller sweeping in the background (the quick start has no
Celery broker, so tasks run inline), and serves the dashboard. Some flows finish by the
simulator's callback to /atlas/callback, others by polling: the journal shows both.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from atlas_review.atlas.simulator import start_simulator
from atlas_review.flows import services, tasks
from atlas_review.flows.models import Flow

log = logging.getLogger(__name__)

DEMO_USER, DEMO_PASSWORD = "demo", "demo-review-2026"
DOCUMENT_SETS = [
    ["invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box"],
    ["invoice", "delivery_order", "aadhaar", "imei"],
    ["invoice", "delivery_order", "pan", "imei", "open_box"],
]


class Command(BaseCommand):
    help = "Run the demo: Atlas simulator, demo flows through the real client, and the dashboard."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--simulator-port",
            type=int,
            default=int(urlsplit(settings.ATLAS_BASE_URL).port or 8765),
        )
        parser.add_argument("--flows", type=int, default=12)
        parser.add_argument(
            "--no-serve", action="store_true", help="create the demo data, then exit"
        )

    def handle(self, *args, **options):
        sim = start_simulator(
            port=options["simulator_port"],
            processing_seconds=3,
            # Callbacks need our web server: only when serving.
            callbacks=bool(settings.ATLAS_CALLBACK_CLIENT_ID) and not options["no_serve"],
            callback_client_id=settings.ATLAS_CALLBACK_CLIENT_ID,
            callback_client_secret=settings.ATLAS_CALLBACK_CLIENT_SECRET,
            client_id=settings.ATLAS_CLIENT_ID,
            client_secret=settings.ATLAS_CLIENT_SECRET,
        )
        self.stdout.write(f"Atlas simulator on {sim.url}")
        self._demo_user()
        if options["no_serve"]:
            self._create_flows(sim, options["flows"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and Flow.objects.unfinished().exists():
                tasks.sweep()
                time.sleep(1)
            sim.stop()
            return
        threading.Thread(
            target=self._background, args=(sim, options["flows"]), name="demo-poller", daemon=True
        ).start()
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Atlas Review: http://127.0.0.1:{options['port']}/\n"
                f"  Log in as {DEMO_USER} / {DEMO_PASSWORD}\n"
            )
        )
        try:
            call_command("runserver", f"127.0.0.1:{options['port']}", use_reloader=False)
        finally:
            sim.stop()

    def _demo_user(self) -> None:
        user, created = User.objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        user.groups.add(*Group.objects.filter(name__in=["reviewer", "supervisor", "auditor"]))

    def _create_flows(self, sim, count: int) -> None:
        start = Flow.objects.count()
        apps = demo_applications(sim.knobs.seed, start, count)
        for i, app in zip(range(start, start + count), apps, strict=True):
            kinds = DOCUMENT_SETS[i % len(DOCUMENT_SETS)]
            files = [
                (sim.file_url(f"{app}-{kind}.svg"), str(n + 1)) for n, kind in enumerate(kinds)
            ]
            services.create_flow(app, files, flow_params={"branch": "Pune", "channel": "dealer"})
        batch_files = [
            (sim.file_url(f"BATCH-{start}-{kind}.svg"), f"00{n + 1}")
            for n, kind in enumerate(["aadhaar", "pan", "invoice"])
        ]
        try:
            services.create_batch(batch_files)
        except Exception as exc:  # the demo goes on without the v1 batch
            log.warning("demo v1 batch not created: %s", exc)
        self.stdout.write(f"Created {count} demo flows and one v1 batch through the Atlas client")

    def _background(self, sim, count: int) -> None:
        time.sleep(1.5)  # let runserver bind before callbacks can arrive
        try:
            self._create_flows(sim, count)
        finally:
            close_old_connections()
        while True:
            try:
                tasks.sweep()
            except Exception:
                log.exception("demo sweep failed")
            finally:
                close_old_connections()
            time.sleep(2)


def demo_applications(seed: object, start: int, count: int) -> list[str]:
    """Application numbers of `count` demo flows from `start` on. The simulator gives a few
    applications in a hundred a handset from its shared pool (a reuse alert); so that a short
    demo shows one, the last two numbers (with 4 flows or more) are the next pair the
    simulator gives the same shared handset."""
    from atlas_review.atlas.simulator.persona import make_persona

    apps = [f"CDL-2026-{1000 + i}" for i in range(start, start + count)]
    if count < 4:
        return apps
    first_with: dict[str, str] = {}
    for i in range(start + count, start + count + 5000):
        app = f"CDL-2026-{1000 + i}"
        persona = make_persona(seed, app)
        if persona.imei_shared:
            if persona.imeis[0] in first_with:
                return [*apps[:-2], first_with[persona.imeis[0]], app]
            first_with[persona.imeis[0]] = app
    return apps
