"""Flows as they stand after their upload, and the result Atlas delivers for them."""

from atlas_review.atlas.simulator import generate_flow_result
from atlas_review.flows.models import Flow, Upload

KINDS = ("invoice", "delivery_order", "aadhaar", "pan", "imei", "open_box")


def awaiting_results(app: str, *, kinds=KINDS, seed: int = 3) -> dict:
    """A flow for application `app` (uuid "uuid-<app>"), POLLING with its upload stored;
    returns the raw result the simulator's generator makes for it."""
    files = [
        {"file_url": f"https://files.example.com/{app}-{k}.jpg", "document_id": str(j), "batch_id": f"B-{app}"}
        for j, k in enumerate(kinds)
    ]  # fmt: skip
    flow = Flow.objects.create(
        flow_uuid=f"uuid-{app}", application_id=app, product_type="PROD_CDL",
        sync_state="POLLING", requested_files=files,
    )  # fmt: skip
    Upload.objects.create(batch_id=f"B-{app}", api="v3", flow=flow, files=files)
    return generate_flow_result(seed, flow.flow_uuid, files, application_id=app)
