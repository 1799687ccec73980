"""Engine and session factory for SQLite and PostgreSQL.

SQLite: WAL journal, ``synchronous=FULL`` (a commit is on disk before it is acknowledged),
a busy timeout, and transactions that start with ``BEGIN IMMEDIATE`` so that every
read-then-write transaction takes the write lock up front instead of failing to upgrade.
This is the recipe of SQLAlchemy's pysqlite documentation ("Serializable isolation").

Work that only reads goes through :func:`read_only_view` of the engine (same pool): there a
transaction starts with a plain deferred ``BEGIN``, which in WAL mode reads a snapshot
without ever taking the write lock, so an admin plot never stalls event ingestion or a tick;
and the connection is ``PRAGMA query_only``, so a read path that tried to write would fail
instead of silently taking the lock. PostgreSQL transactions are the same on both views.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

READ_ONLY = "ranktune_read_only"  # execution option of the read-only engine view
_QUERY_ONLY = "ranktune_query_only"  # a pooled SQLite connection's current query_only pragma


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    if is_sqlite(url):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
        )
        _configure_sqlite(engine, sqlite_synchronous)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(
            f"sqlite_synchronous: expected OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = bool(connection.get_execution_options().get(READ_ONLY, False))
        _set_query_only(connection, read_only)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _set_query_only(connection: Any, read_only: bool) -> None:
    """Switch the pooled connection's ``query_only`` pragma when its use changes (readers
    and writers share the pool), so that the common case costs no statement."""
    info = connection.connection.info
    if info.get(_QUERY_ONLY, False) != read_only:
        connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
        info[_QUERY_ONLY] = read_only


def read_only_view(engine: Engine) -> Engine:
    """The engine, same pool, for transactions that only read (see the module's docstring)."""
    return engine.execution_options(**{READ_ONLY: True})


class ReadOnlySessionError(RuntimeError):
    """A read transaction tried to write: a bug in the read path, never a client error."""


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    raise ReadOnlySessionError(
        f"a read-only session tried to write: new={list(session.new)}, "
        f"dirty={list(session.dirty)}, deleted={list(session.deleted)}"
    )


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``read_only`` ones run on :func:`read_only_view` and refuse to
    flush, which catches an ORM write in a read path on PostgreSQL as well as on SQLite."""
    if not read_only:
        return sessionmaker(engine, expire_on_commit=False)
    factory = sessionmaker(read_only_view(engine), expire_on_commit=False)
    event.listen(factory, "before_flush", _refuse_flush)
    return factory


def migrations_config(database_url: str) -> Config:
    """The Alembic configuration of the packaged migrations, pointed at ``database_url``."""
    from alembic.config import Config

    import migrations

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migration_heads() -> list[str]:
    """The latest revisions of the packaged migrations (what ``upgrade`` brings a database to)."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(migrations_config("sqlite://")).get_heads())


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (creates a SQLite file if missing)."""
    from alembic import command

    command.upgrade(migrations_config(database_url), revision)


def driver_rows(connection: Connection, statement: str, params: tuple[Any, ...]) -> list[Any]:
    """The statement's rows straight from the driver's cursor, in the connection's
    transaction: SQLAlchemy's result processing costs more than the query for thousands
    of rows of values that need no processing (numbers, bytes). ``statement`` uses the
    driver's parameter marks; a driver error is re-raised as SQLAlchemy's exception.
    PostgreSQL's results come in binary format: the packed arrays (``bytea``) arrive as
    their bytes instead of hex text to decode (a dense segmented tick reads megabytes)."""
    raw: Any = connection.connection.dbapi_connection
    cursor = raw.cursor(binary=True) if connection.dialect.name == "postgresql" else raw.cursor()
    try:
        cursor.execute(statement, params)
        return list(cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            statement, params, error, connection.dialect.loaded_dbapi.Error
        ) from error
    finally:
        cursor.close()


def param_mark(connection: Connection) -> str:
    """The driver's mark for one parameter of a statement run through it (``driver_rows``,
    ``exec_driver_sql``): psycopg's ``%s``, sqlite3's ``?``."""
    return "%s" if connection.dialect.name == "postgresql" else "?"


# Packed columns (migration 0027): one byte naming the element type, then the elements,
# little-endian. Integers, and floats that are whole numbers (counts), take the narrowest of
# 1, 2, 4 or 8 bytes that holds every element; other floats take 8. A dense segmented tick
# wrote 1.0 MB where plain int64/float64 arrays took 3.3 MB (docs/design.md).
_INT_TYPES = tuple((str(size).encode(), np.dtype(f"<i{size}")) for size in (1, 2, 4, 8))
_FLOAT_CODE, _FLOAT_TYPE = b"f", np.dtype("<f8")
_TYPES = {code[0]: dtype for code, dtype in (*_INT_TYPES, (_FLOAT_CODE, _FLOAT_TYPE))}
_ITEMSIZE = np.zeros(256, dtype=np.int64)  # by type byte; 0: not a type byte
for _code, _dtype in _TYPES.items():
    _ITEMSIZE[_code] = _dtype.itemsize
_EXACT = 2.0**53  # whole floats up to this are exact as int64 and back


def pack_ints(values: npt.ArrayLike) -> bytes:
    """An array of integers as stored in a packed column: its type byte, then the elements
    in the narrowest little-endian integer type that holds them all."""
    return _packed_ints(np.asarray(values, dtype=np.int64))


def _packed_ints(ints: npt.NDArray[np.int64]) -> bytes:
    low, high = (int(ints.min()), int(ints.max())) if ints.size else (0, 0)
    for code, dtype in _INT_TYPES:
        bounds = np.iinfo(dtype)
        if bounds.min <= low and high <= bounds.max:
            return code + ints.astype(dtype).tobytes()
    raise AssertionError("int64 holds every int64")  # pragma: no cover


def pack_floats(values: npt.ArrayLike) -> bytes:
    """An array of floats as stored in a packed column: whole numbers (up to 2**53 in
    magnitude) as :func:`pack_ints` packs them, anything else as float64."""
    floats = np.asarray(values, dtype=np.float64)
    if bool(np.all(np.abs(floats) <= _EXACT)) and np.array_equal(floats, np.trunc(floats)):
        return _packed_ints(floats.astype(np.int64))
    return _FLOAT_CODE + floats.astype(_FLOAT_TYPE).tobytes()


def _unpacked(blob: bytes | memoryview) -> npt.NDArray[Any]:
    """The elements of a packed column, as stored (a read-only view of the bytes)."""
    view = memoryview(blob)
    dtype = _TYPES.get(view[0]) if view.nbytes else None
    if dtype is None:
        raise ValueError("not a packed column: the first byte names no element type")
    if (view.nbytes - 1) % dtype.itemsize:
        raise ValueError("not a packed column: its length is not a whole number of elements")
    return np.frombuffer(view, dtype=dtype, offset=1)


def unpack_floats(blob: bytes | memoryview) -> npt.NDArray[np.float64]:
    """The elements of a packed column as float64 (a column packed from floats or ints)."""
    return _unpacked(blob).astype(np.float64, copy=False)


def unpack_ints(blob: bytes | memoryview) -> npt.NDArray[np.int64]:
    """The elements of a packed column of integers as int64."""
    values = _unpacked(blob)
    if values.dtype.kind != "i":
        raise ValueError("not a packed column of integers: it holds floats")
    return values.astype(np.int64, copy=False)


def _layout(blobs: Sequence[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Each packed column's type byte and number of elements (ValueError if one is not a
    packed column)."""
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    if (lengths == 0).any():
        raise ValueError("not a packed column: an empty value")
    codes = np.fromiter((blob[0] for blob in blobs), dtype=np.uint8, count=len(blobs))
    sizes = _ITEMSIZE[codes]
    if (sizes == 0).any() or ((lengths - 1) % np.maximum(sizes, 1)).any():
        raise ValueError("not a packed column: a type byte or a length is wrong")
    counts: npt.NDArray[np.int64] = (lengths - 1) // sizes
    return codes, counts


def packed_lengths(blobs: Sequence[bytes]) -> npt.NDArray[np.int64]:
    """The number of elements of each packed column (ValueError if one is not one)."""
    return _layout(blobs)[1]


def unpack_joined_ints(blobs: Sequence[bytes]) -> npt.NDArray[np.int64]:
    """The integers of several packed columns one after the other, as int64: what
    concatenating :func:`unpack_ints` of each gives, in a few NumPy calls whatever the
    number of columns (a tick sums a thousand writers' batches at once). Each element
    type's bytes are taken out of the joined columns with one mask and put in place with
    another."""
    if len(blobs) == 1:
        return unpack_ints(blobs[0])
    codes, counts = _layout(blobs)
    if (codes == _FLOAT_CODE[0]).any():
        raise ValueError("not a packed column of integers: it holds floats")
    joined = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    lengths = counts * _ITEMSIZE[codes] + 1
    is_type_byte = np.zeros(joined.size, dtype=bool)
    is_type_byte[np.cumsum(lengths) - lengths] = True
    values = np.empty(int(counts.sum()), dtype=np.int64)
    for code in np.unique(codes).tolist():
        mine = codes == code
        elements = joined[np.repeat(mine, lengths) & ~is_type_byte].view(_TYPES[code])
        values[np.repeat(mine, counts)] = elements
    return values


def array_params(kinds: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> tuple[str, ...]:
    """The columns of ``rows`` as PostgreSQL array literals, one per column, for statements
    that unnest ``%s::<kind>[]`` parameters. Text, not lists: psycopg adapts a list element
    by element in Python, which cost a tick of 500 arms more than its statements (about
    5x the time of joining the literal). ``kinds``: the PostgreSQL type of each column
    (``int``/``bigint``: integers, ``float8``: floats written exactly by ``repr``,
    anything else: text, quoted); None is NULL."""
    columns = list(zip(*rows, strict=True)) or [() for _ in kinds]
    return tuple(_array_literal(column, kind) for column, kind in zip(columns, kinds, strict=True))


def _array_literal(values: Sequence[Any], kind: str) -> str:
    if kind in ("int", "bigint"):
        items = ["NULL" if value is None else str(int(value)) for value in values]
    elif kind == "float8":
        items = ["NULL" if value is None else repr(float(value)) for value in values]
    else:
        # Quoted once per distinct value (text columns repeat a few values: groups, types).
        quoted = {
            value: "NULL"
            if value is None
            else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in set(values)
        }
        items = list(map(quoted.__getitem__, values))
    return "{" + ",".join(items) + "}"


def add_counts(
    connection: Connection,
    table: str,
    key: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Upsert ``rows`` (the ``key`` columns' values, then a count, each key once) into a
    table of counts, adding each count to the stored one: one statement per row on SQLite
    (an executemany, in C), one for all rows on PostgreSQL, the columns travelling as
    arrays that the server unnests in order (a statement per key cost the writer and the
    tick a sixth of their time there). ``key`` names each key column with its PostgreSQL
    type. Rows go in the caller's order, which sets the order the row locks are taken."""
    if not rows:
        return
    names = ", ".join(name for name, _ in key)
    conflict = f"ON CONFLICT ({names}) DO UPDATE SET count = {table}.count + excluded.count"
    columns = f"INSERT INTO {table} ({names}, count)"
    if connection.dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in key)
        connection.exec_driver_sql(
            f"{columns} SELECT * FROM unnest({arrays}, %s::bigint[]) {conflict}",
            array_params([*(kind for _, kind in key), "bigint"], rows),
        )
        return
    marks = ", ".join("?" * (len(key) + 1))
    connection.exec_driver_sql(f"{columns} VALUES ({marks}) {conflict}", list(rows))


def insert_rows(
    connection: Connection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``, each a column name and its
    PostgreSQL type): an executemany on SQLite, one statement whose columns travel as
    arrays on PostgreSQL (as :func:`add_counts`). No ORM object per row."""
    if not rows:
        return
    names = ", ".join(name for name, _ in columns)
    if connection.dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})",
            array_params([kind for _, kind in columns], rows),
        )
        return
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))


def update_rows(
    connection: Connection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Set columns of rows by id: each row is the new values in the order of ``columns``
    (name, PostgreSQL type), then the row's integer ``id``. An executemany on SQLite, one
    ``UPDATE ... FROM unnest(...)`` on PostgreSQL."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        names = ", ".join(name for name, _ in columns)
        assignments = ", ".join(f"{name} = u.{name}" for name, _ in columns)
        connection.exec_driver_sql(
            f"UPDATE {table} SET {assignments} FROM unnest({arrays}, %s::int[]) "
            f"AS u({names}, id) WHERE {table}.id = u.id",
            array_params([*(kind for _, kind in columns), "int"], rows),
        )
        return
    assignments = ", ".join(f"{name} = ?" for name, _ in columns)
    connection.exec_driver_sql(f"UPDATE {table} SET {assignments} WHERE id = ?", list(rows))
