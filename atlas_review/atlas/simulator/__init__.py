"""A faithful stand-in for the Atlas API (both the v3 flow and the v1 docstream families).

Run it with `python manage.py atlas_simulator`, or in tests:

    with start_simulator(processing_seconds=0) as sim:
        requests.post(sim.v3_url + "/authtoken", headers={...})

The HTTP server, state and callbacks use only the standard library (plus python-stdnum for
check digits); no Django and no database. Results come from generator.py, a set of pure
functions of the seed, so the same inputs always give the same documents.
"""

from .generator import (
    CROSS_CHECKS,
    DOCUMENT_TYPES,
    detect_document_type,
    generate_batch_items,
    generate_cross_checks,
    generate_document,
    generate_flow_result,
    similarity,
)
from .persona import make_persona, shared_phones
from .server import SimulatorHandle, start_simulator
from .state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Knobs
from .svg import render_document_svg

__all__ = [
    "CROSS_CHECKS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DOCUMENT_TYPES",
    "Knobs",
    "SimulatorHandle",
    "detect_document_type",
    "generate_batch_items",
    "generate_cross_checks",
    "generate_document",
    "generate_flow_result",
    "make_persona",
    "render_document_svg",
    "shared_phones",
    "similarity",
    "start_simulator",
]
