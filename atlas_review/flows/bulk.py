"""Set-based writes on PostgreSQL, for rows that are all new (a flow's first results, and
what the checks and review apps derive from them): ids drawn from the tables' own
sequences in one query, so rows can point at each other before they are written, then the
rows streamed with COPY instead of compiled into INSERTs.

At ~50 rows per flow, building model instances and INSERT statements cost ~40 µs a row
against ~2 µs for COPY (bench/ingest_bench.py). Other databases (SQLite, the quick start)
are not supported here: callers check `supported()` and take the ORM path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db import connection
from django.db.models import Model
from psycopg.types.json import Jsonb


def supported() -> bool:
    return connection.vendor == "postgresql"


def jsonb(value):
    """A JSONField value as COPY must write it: None is SQL NULL, as Django stores it."""
    return None if value is None else Jsonb(value)


def allocate_ids(counts: dict[type[Model], int]) -> dict[type[Model], list[int]]:
    """`n` new primary keys per model, from each table's identity sequence, in one query.
    Concurrent callers get distinct ids (nextval never hands a value out twice)."""
    parts, params = [], []
    for model, n in counts.items():
        parts.append("ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))")
        params += [_sequence(model), n]
    if not parts:
        return {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    return {model: list(ids) for model, ids in zip(counts, row, strict=True)}


_SEQUENCES: dict[str, str] = {}


def _sequence(model: type[Model]) -> str:
    """The identity sequence behind the model's id (looked up once per table and process:
    per row, the look-up cost more than nextval)."""
    table = model._meta.db_table
    if table not in _SEQUENCES:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            _SEQUENCES[table] = cursor.fetchone()[0]
    return _SEQUENCES[table]


def copy(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence]) -> int:
    """COPY rows (tuples in the order of `columns`) into the model's table; rows written.
    Nothing to write costs no round trip."""
    if not rows:
        return 0
    qn = connection.ops.quote_name
    sql = f"COPY {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN"
    written = 0
    started = time.monotonic()
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as stream:
        for row in rows:
            stream.write_row(row)
            written += 1
    if connection.queries_logged:
        # COPY bypasses Django's cursor wrapper: logged by hand, so query counts (tests,
        # the debug toolbar) see it.
        took = time.monotonic() - started
        connection.queries_log.append({"sql": f"{sql} -- {written} rows", "time": f"{took:.3f}"})
    return written


def update(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> int:
    """Model.objects.bulk_update(objs, fields) as one UPDATE ... FROM unnest(arrays): Django
    builds a CASE WHEN per field and row, whose compiling cost ~4 ms a row at a few hundred
    rows (bench/ingest_bench.py). Values go through each field's get_db_prep_save. Other
    databases get Django's bulk_update."""
    if not objs:
        return 0
    if not supported():
        return model.objects.bulk_update(objs, fields, batch_size=1000)
    meta, qn = model._meta, connection.ops.quote_name
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    arrays = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for obj in objs]
        for column in columns
    ]
    names = [qn(c.column) for c in columns]
    types = [c.rel_db_type(connection) if c.primary_key else c.db_type(connection) for c in columns]
    casts = ", ".join(f"%s::{t}[]" for t in types)
    assignments = ", ".join(f"{n} = v.{n}" for n in names[1:])
    # Identifiers come from the model's meta, quoted; every value is a parameter.
    sql = (
        f"UPDATE {qn(meta.db_table)} AS t SET {assignments} FROM unnest({casts})"  # noqa: S608
        f" AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount
