//! Where PostgreSQL and SQLite differ, and nothing else: how an instant, a list and a batch of
//! rows travel as parameters, how a JSON column is read, how rows are locked, and how a
//! schedule gets its insertion order. Every query of the store is written once, in
//! PostgreSQL's `$n` style, with these pieces spliced in.

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use service_kit::sql::{Binder, Spread};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// The type of a column of [`Dialect::rows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
    Bool,
    Instant,
    Json,
}

impl Kind {
    fn postgres(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int => "int8",
            Kind::Bool => "bool",
            Kind::Instant => "timestamptz",
            Kind::Json => "jsonb",
        }
    }
}

/// The columns of a [`Batch`], in order.
pub(crate) type Columns = [(&'static str, Kind)];

impl Dialect {
    /// The backend's name, for logs and status.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// `column` is false. SQLite uses a partial index only for the very predicate it was
    /// declared with (`paused = 0`), so the test is written as each schema declares it.
    pub(crate) fn is_false(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("NOT {column}"),
            Dialect::Sqlite => format!("{column} = 0"),
        }
    }

    /// `column` is true, written as each schema declares its partial indexes of true rows.
    pub(crate) fn is_true(self, column: &str) -> String {
        match self {
            Dialect::Postgres => column.to_string(),
            Dialect::Sqlite => format!("{column} = 1"),
        }
    }

    /// How a query's plan is asked for, and the column each of its lines comes in.
    pub(crate) fn explain(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Postgres => ("EXPLAIN", "QUERY PLAN"),
            Dialect::Sqlite => ("EXPLAIN QUERY PLAN", "detail"),
        }
    }

    /// The text of a top-level field of a JSON column.
    pub(crate) fn json_text(self, column: &str, field: &str) -> String {
        match self {
            Dialect::Postgres => format!("{column}->>'{field}'"),
            Dialect::Sqlite => format!("json_extract({column}, '$.{field}')"),
        }
    }

    /// `expression` is one of the [`List`] bound as `param`.
    pub(crate) fn in_list(self, expression: &str, param: &str) -> String {
        match self {
            Dialect::Postgres => format!("{expression} = ANY({param})"),
            Dialect::Sqlite => format!("{expression} IN (SELECT value FROM json_each({param}))"),
        }
    }

    /// `expression` is one of the names bound as `names` or starts with one of the prefixes
    /// bound as `prefixes`, both [`List`]s: an owner within a client's
    /// [`Owners`](service_kit::auth::Owners).
    pub(crate) fn in_owners(self, expression: &str, names: &str, prefixes: &str) -> String {
        let starts = match self {
            Dialect::Postgres => format!(
                "EXISTS (SELECT 1 FROM unnest({prefixes}) AS p(value) \
                 WHERE left({expression}, length(p.value)) = p.value)"
            ),
            Dialect::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each({prefixes}) AS p \
                 WHERE substr({expression}, 1, length(p.value)) = p.value)"
            ),
        };
        format!("({} OR {starts})", self.in_list(expression, names))
    }

    /// Narrows a listing's `sql` to a client's scope of `owners`, when it has one (` AND `
    /// [`Dialect::in_owners`] of `expression`); returns the names and the prefixes to bind as
    /// `names` and `prefixes` (empty when there is no scope).
    pub(crate) fn within_owners(
        self,
        sql: &mut String,
        expression: &str,
        owners: Option<&service_kit::auth::Owners>,
        (names, prefixes): (&str, &str),
    ) -> (List, List) {
        if owners.is_some() {
            sql.push_str(" AND ");
            sql.push_str(&self.in_owners(expression, names, prefixes));
        }
        List::owners(owners)
    }

    /// The setting that keeps the statements of a transaction from being compiled by
    /// PostgreSQL's JIT (for short queries whose estimates may pass its threshold); SQLite has
    /// no JIT.
    pub(crate) fn without_jit(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some("SET LOCAL jit = off"),
            Dialect::Sqlite => None,
        }
    }

    /// Locks the rows a `SELECT` finds, skipping those another transaction holds. SQLite's
    /// write transactions hold the whole file (`BEGIN IMMEDIATE`), so there is nothing to add.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// [`Dialect::skip_locked`] of the rows of one table of a join.
    pub(crate) fn skip_locked_of(self, alias: &str) -> String {
        match self {
            Dialect::Postgres => format!(" FOR UPDATE OF {alias} SKIP LOCKED"),
            Dialect::Sqlite => String::new(),
        }
    }

    /// Holds the rows of `alias` a `SELECT` finds until the transaction ends.
    pub(crate) fn hold_of(self, alias: &str) -> String {
        match self {
            Dialect::Postgres => format!(" FOR UPDATE OF {alias}"),
            Dialect::Sqlite => String::new(),
        }
    }

    /// A query of the replicas alive now (the `objid` of each one's advisory lock, see
    /// [`crate::replica`]), where the database can tell: a SQLite file serves one process.
    pub(crate) fn live_replicas(self) -> Option<String> {
        match self {
            Dialect::Postgres => Some(format!(
                "SELECT l.objid FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted \
                 AND l.objsubid = 2 AND l.classid = ({})::oid AND l.database = \
                 (SELECT oid FROM pg_database WHERE datname = current_database())",
                crate::replica::LOCK_KEY
            )),
            Dialect::Sqlite => None,
        }
    }

    /// Whether one statement can feed a write into another (`WITH … UPDATE … RETURNING`):
    /// PostgreSQL can; SQLite cannot.
    pub(crate) fn chains_writes(self) -> bool {
        self == Dialect::Postgres
    }

    /// The address of `alias`'s row as text, to find it again in the same transaction
    /// without a lookup by key.
    pub(crate) fn address_text(self, alias: &str) -> String {
        match self {
            Dialect::Postgres => format!("{alias}.ctid::text"),
            Dialect::Sqlite => format!("CAST({alias}.rowid AS TEXT)"),
        }
    }

    /// `alias`'s row is at the address in `column` of a batch, whose column of addresses is
    /// bound as `param`.
    pub(crate) fn at_address(self, alias: &str, column: &str, param: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "{alias}.ctid = ANY({param}::text[]::tid[]) AND {alias}.ctid = {column}::tid"
            ),
            Dialect::Sqlite => format!("{alias}.rowid = CAST({column} AS INTEGER)"),
        }
    }

    /// A row's physical address, for deleting a bounded batch found by a subquery.
    pub(crate) fn address(self) -> &'static str {
        match self {
            Dialect::Postgres => "ctid",
            Dialect::Sqlite => "rowid",
        }
    }

    /// The insertion order of a new schedule of a [`Dialect::rows`] batch numbered by its `n`
    /// column: PostgreSQL's identity column counts by itself; on SQLite it follows the
    /// greatest so far. Returns the column to add to the insert's list and its value.
    pub(crate) fn seq(self, table: &str) -> (&'static str, String) {
        match self {
            Dialect::Postgres => ("", String::new()),
            Dialect::Sqlite => (
                ", seq",
                format!(", (SELECT coalesce(max(seq), 0) FROM {table}) + u.n"),
            ),
        }
    }

    /// The rows of the [`Batch`] bound from parameter `first` on (see [`Batch`]), as a table
    /// `u` with these columns.
    pub(crate) fn rows(self, first: usize, columns: &Columns) -> String {
        self.rows_as(first, columns, "u")
    }

    /// [`Dialect::rows`] as a table named `alias`.
    pub(crate) fn rows_as(self, first: usize, columns: &Columns, alias: &str) -> String {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        match self {
            Dialect::Postgres => {
                let arrays: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| format!("${}::{}[]", first + i, kind.postgres()))
                    .collect();
                format!(
                    "UNNEST({}) AS {alias}({})",
                    arrays.join(", "),
                    names.join(", ")
                )
            }
            Dialect::Sqlite => {
                let read: Vec<String> = names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| format!("json_extract(value, '$[{i}]') AS {name}"))
                    .collect();
                format!(
                    "(SELECT {} FROM json_each(${first})) AS {alias}",
                    read.join(", ")
                )
            }
        }
    }

    /// An instant as this backend keeps it: to the microsecond on PostgreSQL, the millisecond
    /// on SQLite (what a key read back from the database is compared with).
    pub(crate) fn stored(self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Dialect::Postgres => at.trunc_subsecs(6),
            Dialect::Sqlite => at.trunc_subsecs(3),
        }
    }
}

/// One value of a row of a [`Batch`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(i64),
    Bool(bool),
    Instant(Option<DateTime<Utc>>),
    Json(Value),
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(Some(text.to_string()))
    }
}

impl From<Option<String>> for Cell {
    fn from(text: Option<String>) -> Self {
        Cell::Text(text)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Int(n)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Self {
        Cell::Bool(b)
    }
}

impl From<DateTime<Utc>> for Cell {
    fn from(at: DateTime<Utc>) -> Self {
        Cell::Instant(Some(at))
    }
}

impl From<Option<DateTime<Utc>>> for Cell {
    fn from(at: Option<DateTime<Utc>>) -> Self {
        Cell::Instant(at)
    }
}

impl From<Value> for Cell {
    fn from(value: Value) -> Self {
        Cell::Json(value)
    }
}

/// Rows sent as parameters and read back as a table by [`Dialect::rows`]: on PostgreSQL an
/// array per column (`UNNEST`, each value in its binary form), on SQLite one JSON array of
/// rows (`json_each`), instants in milliseconds. Bound after a query's other values (`; batch`
/// in `on_db!`).
#[derive(Debug)]
pub(crate) struct Batch {
    columns: &'static Columns,
    rows: Vec<Vec<Cell>>,
}

impl Batch {
    pub(crate) fn new(columns: &'static Columns) -> Self {
        Batch {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row, one cell per column in their order.
    pub(crate) fn push<const N: usize>(&mut self, row: [Cell; N]) {
        debug_assert_eq!(N, self.columns.len(), "a row has a cell per column");
        self.rows.push(row.into());
    }

    /// The cells of column `i`, taken out of the rows, as one array of its PostgreSQL type.
    fn take_column<T>(&mut self, i: usize, cell: impl Fn(Cell) -> Option<T>) -> Vec<Option<T>> {
        self.rows
            .iter_mut()
            .map(|row| cell(std::mem::replace(&mut row[i], Cell::Text(None))))
            .collect()
    }
}

impl Spread for Batch {
    fn spread_postgres<'q, B: Binder<'q, Postgres>>(mut self, mut query: B) -> B {
        for (i, (_, kind)) in self.columns.iter().enumerate() {
            query = match kind {
                Kind::Text => query.bind_value(self.take_column(i, |c| match c {
                    Cell::Text(text) => text,
                    _ => None,
                })),
                Kind::Int => query.bind_value(self.take_column(i, |c| match c {
                    Cell::Int(n) => Some(n),
                    _ => None,
                })),
                Kind::Bool => query.bind_value(self.take_column(i, |c| match c {
                    Cell::Bool(b) => Some(b),
                    _ => None,
                })),
                Kind::Instant => query.bind_value(self.take_column(i, |c| match c {
                    Cell::Instant(at) => at,
                    _ => None,
                })),
                Kind::Json => query.bind_value(self.take_column(i, |c| match c {
                    Cell::Json(value) => Some(value),
                    _ => None,
                })),
            };
        }
        query
    }

    fn spread_sqlite<'q, B: Binder<'q, Sqlite>>(self, query: B) -> B {
        let rows: Vec<Value> = self
            .rows
            .into_iter()
            .map(|row| {
                Value::Array(
                    row.into_iter()
                        .map(|cell| match cell {
                            Cell::Text(text) => text.map_or(Value::Null, Value::from),
                            Cell::Int(n) => n.into(),
                            Cell::Bool(b) => b.into(),
                            Cell::Instant(at) => {
                                at.map_or(Value::Null, |at| at.timestamp_millis().into())
                            }
                            Cell::Json(value) => value,
                        })
                        .collect(),
                )
            })
            .collect();
        query.bind_value(Value::Array(rows).to_string())
    }
}

/// An instant as a parameter or a column: `timestamptz` on PostgreSQL, integer milliseconds
/// since the epoch on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct At(pub(crate) DateTime<Utc>);

impl Type<Postgres> for At {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for At {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for At {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(At(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for At {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for At {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_millis(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for At {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let millis = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_millis(millis)
            .map(At)
            .ok_or_else(|| format!("instant {millis} out of range").into())
    }
}

/// A list of texts as one parameter, for [`Dialect::in_list`]: an array on PostgreSQL, a JSON
/// array on SQLite.
#[derive(Debug, Clone)]
pub(crate) struct List(pub(crate) Vec<String>);

impl List {
    pub(crate) fn of<'a>(items: impl IntoIterator<Item = &'a str>) -> List {
        List(items.into_iter().map(str::to_string).collect())
    }

    /// The names and the prefixes of a scope of owners, for [`Dialect::in_owners`] (two empty
    /// lists when there is none).
    pub(crate) fn owners(owners: Option<&service_kit::auth::Owners>) -> (List, List) {
        match owners {
            Some(owners) => (
                List::of(owners.names().iter().map(String::as_str)),
                List::of(owners.prefixes().iter().map(String::as_str)),
            ),
            None => (List(Vec::new()), List(Vec::new())),
        }
    }
}

impl Type<Postgres> for List {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for List {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Vec<String> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for List {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for List {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_back_with_their_columns_on_each_backend() {
        let columns = [("id", Kind::Text), ("at", Kind::Instant)];
        assert_eq!(
            Dialect::Postgres.rows(3, &columns),
            "UNNEST($3::text[], $4::timestamptz[]) AS u(id, at)"
        );
        assert_eq!(
            Dialect::Sqlite.rows(3, &columns),
            "(SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at \
             FROM json_each($3)) AS u"
        );
    }

    #[test]
    fn instants_are_compared_as_each_backend_keeps_them() {
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Dialect::Postgres.stored(at).to_rfc3339(),
            "2026-01-01T10:00:00.123456+00:00"
        );
        assert_eq!(
            Dialect::Sqlite.stored(at).to_rfc3339(),
            "2026-01-01T10:00:00.123+00:00"
        );
    }
}
