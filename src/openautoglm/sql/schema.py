"""Database schema introspection (SQLAlchemy) and CREATE TABLE-style schema prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database


@dataclass
class Column:
    name: str
    type: str
    primary_key: bool = False
    samples: list[Any] = field(default_factory=list)

    @property
    def is_text(self) -> bool:
        t = self.type.upper()
        return any(k in t for k in ("CHAR", "TEXT", "CLOB", "STRING", "VARCHAR")) or t == ""


@dataclass
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass
class Table:
    name: str
    columns: list[Column]
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    def column(self, name: str) -> Column | None:
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)


@dataclass
class Schema:
    """Tables of one database, in introspection order."""

    tables: list[Table]
    dialect: str = "sqlite"

    def table(self, name: str) -> Table | None:
        low = name.lower()
        return next((t for t in self.tables if t.name.lower() == low), None)

    @property
    def column_count(self) -> int:
        return sum(len(t.columns) for t in self.tables)

    def neighbours(self, table: str) -> set[str]:
        """Tables joined to ``table`` by a foreign key (either direction)."""
        low = table.lower()
        out = set()
        for t in self.tables:
            for fk in t.foreign_keys:
                if t.name.lower() == low:
                    out.add(fk.ref_table)
                elif fk.ref_table.lower() == low:
                    out.add(t.name)
        return out

    def to_prompt(self, tables: Iterable[str] | None = None, columns: dict[str, set[str]] | None = None,
                  samples: bool = True) -> str:
        """CREATE TABLE statements for ``tables`` (default all), keeping only ``columns``
        per table when given (keys are always kept), with sample values as comments."""
        chosen = [self.table(n) for n in tables] if tables is not None else list(self.tables)
        parts = []
        for t in chosen:
            if t is None:
                continue
            keep = columns.get(t.name) if columns else None
            fk_cols = {fk.column for fk in t.foreign_keys}
            lines: list[tuple[str, str]] = []  # (declaration, comment)
            for c in t.columns:
                if keep is not None and c.name not in keep and not c.primary_key and c.name not in fk_cols:
                    continue
                comment = ""
                if samples and c.samples:
                    comment = " -- e.g. " + ", ".join(_short(v) for v in c.samples[:3])
                lines.append((f"  {_quote(c.name)} {c.type or 'TEXT'}", comment))
            pks = [c.name for c in t.columns if c.primary_key]
            if pks:
                lines.append((f"  PRIMARY KEY ({', '.join(_quote(p) for p in pks)})", ""))
            for fk in t.foreign_keys:
                lines.append((f"  FOREIGN KEY ({_quote(fk.column)}) REFERENCES "
                              f"{_quote(fk.ref_table)}({_quote(fk.ref_column)})", ""))
            last = len(lines) - 1
            body = "\n".join(f"{decl}{'' if i == last else ','}{comment}" for i, (decl, comment) in enumerate(lines))
            parts.append(f"CREATE TABLE {_quote(t.name)} (\n{body}\n);")
        return "\n\n".join(parts)


def _quote(name: str) -> str:
    return name if name.replace("_", "").isalnum() and not name[0].isdigit() else '"' + name.replace('"', '""') + '"'


def _short(value: Any, width: int = 24) -> str:
    text = str(value).replace("\n", " ")
    return repr(text[:width]) if isinstance(value, str) else text[:width]


def introspect(db: "Database", *, sample_values: int = 3) -> Schema:
    """Read tables, columns, types, keys and a few distinct sample values per column."""
    import warnings

    from sqlalchemy import exc, inspect

    if db.dialect == "duckdb":
        tables = _duckdb_tables(db.engine)
        schema = Schema(tables, db.dialect)
        if sample_values:
            _add_samples(db, schema, sample_values)
        return schema
    insp = inspect(db.engine)
    tables = []
    with warnings.catch_warnings():  # SQLite files with sloppy FOREIGN KEY clauses (Spider's) warn per table
        warnings.simplefilter("ignore", exc.SAWarning)
        for name in insp.get_table_names():
            tables.append(_read_table(insp, name))
    schema = Schema(tables, db.dialect)
    if sample_values:
        _add_samples(db, schema, sample_values)
    return schema


def _read_table(insp: Any, name: str) -> Table:
    pk = set(insp.get_pk_constraint(name).get("constrained_columns") or [])
    cols = [Column(c["name"], _type_name(c["type"]), c["name"] in pk) for c in insp.get_columns(name)]
    fks = []
    for fk in insp.get_foreign_keys(name):
        for col, ref in zip(fk.get("constrained_columns") or [], fk.get("referred_columns") or []):
            fks.append(ForeignKey(col, fk.get("referred_table") or "", ref))
    return Table(name, cols, fks)


def _duckdb_tables(engine: Any) -> list[Table]:
    """Tables of a DuckDB database from its own catalog functions.  SQLAlchemy's reflection
    through duckdb_engine queries PostgreSQL's pg_catalog with casts DuckDB lacks (REGCLASS:
    broken with duckdb 1.5/2.0, duckdb_engine 0.17, SQLAlchemy 2.0/2.1)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal ORDER BY table_name"))]
        columns = conn.execute(text("SELECT table_name, column_name, data_type FROM duckdb_columns()"
                                    " WHERE schema_name = 'main' ORDER BY table_name, column_index")).fetchall()
        keys = conn.execute(text("SELECT table_name, constraint_type, constraint_column_names, referenced_table,"
                                 " referenced_column_names FROM duckdb_constraints() WHERE schema_name = 'main'"
                                 " AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')")).fetchall()
    pk = {(t, c) for t, kind, cols, _, _ in keys if kind == "PRIMARY KEY" for c in cols}
    tables = []
    for name in names:
        cols = [Column(c, str(kind), (name, c) in pk) for t, c, kind in columns if t == name]
        fks = [ForeignKey(col, ref_table or "", ref) for t, kind, cols_, ref_table, refs in keys
               if t == name and kind == "FOREIGN KEY" for col, ref in zip(cols_, refs)]
        tables.append(Table(name, cols, fks))
    return tables


def _type_name(sa_type: Any) -> str:
    try:
        return str(sa_type)
    except Exception:  # noqa: BLE001 - some dialect types cannot compile without a dialect
        return type(sa_type).__name__.upper()


def _add_samples(db: "Database", schema: Schema, k: int) -> None:
    from .database import DatabaseError

    for t in schema.tables:
        for c in t.columns:
            q = f"SELECT DISTINCT {_ident(c.name, db.dialect)} FROM {_ident(t.name, db.dialect)} " \
                f"WHERE {_ident(c.name, db.dialect)} IS NOT NULL LIMIT {int(k)}"
            try:
                c.samples = [r[0] for r in db.execute(q, timeout_s=2.0, max_rows=k).rows]
            except DatabaseError:
                c.samples = []


def _ident(name: str, dialect: str) -> str:
    quote = "`" if dialect == "mysql" else '"'
    return quote + name.replace(quote, quote * 2) + quote
