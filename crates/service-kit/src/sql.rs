//! A query written once and run on either backend where the SQL is the same.
//!
//! Queries are written in PostgreSQL's `$n` placeholder style; [`on_db!`](crate::on_db) runs
//! one on a [`Conn`] of either backend, rewriting the placeholders to SQLite's `?n`. The
//! calling function's error type must convert from `sqlx::Error`.

use sqlx::postgres::{PgConnection, PgRow, Postgres};
use sqlx::query::{Query, QueryAs};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteRow};
use sqlx::{Database, Decode, Encode, Type};

/// A connection of either backend, for [`on_db!`](crate::on_db).
pub enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// The same connection for one more query, keeping this handle for the next.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(c) => Conn::Postgres(c),
            Conn::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A row of either backend, for [`on_db!`](crate::on_db)'s `rows` forms: read by column name.
pub enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

/// A value both backends decode.
pub trait Column:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl Row {
    /// The value of `column`.
    pub fn try_get<T: Column>(&self, column: &str) -> Result<T, sqlx::Error> {
        use sqlx::Row as _;
        match self {
            Row::Postgres(row) => row.try_get(column),
            Row::Sqlite(row) => row.try_get(column),
        }
    }
}

/// A query builder of either form (`sqlx::query`, `sqlx::query_as`) that takes one more value.
pub trait Binder<'q, DB: Database>: Sized {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self;
}

impl<'q, DB: Database> Binder<'q, DB> for Query<'q, DB, <DB as Database>::Arguments<'q>> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> Binder<'q, DB> for QueryAs<'q, DB, O, <DB as Database>::Arguments<'q>> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Values bound as as many parameters as each backend needs, after the others (`; spread` in
/// [`on_db!`](crate::on_db)): a batch of rows is an array per column on PostgreSQL and one
/// JSON document on SQLite.
pub trait Spread {
    fn spread_postgres<'q, B: Binder<'q, Postgres>>(self, query: B) -> B;
    fn spread_sqlite<'q, B: Binder<'q, Sqlite>>(self, query: B) -> B;
}

impl<A: Spread, B: Spread> Spread for (A, B) {
    fn spread_postgres<'q, Q: Binder<'q, Postgres>>(self, query: Q) -> Q {
        self.1.spread_postgres(self.0.spread_postgres(query))
    }

    fn spread_sqlite<'q, Q: Binder<'q, Sqlite>>(self, query: Q) -> Q {
        self.1.spread_sqlite(self.0.spread_sqlite(query))
    }
}

/// `$1` → `?1`: SQLite's numbered placeholders. Only `$` followed by a digit is rewritten.
pub fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs one query on a [`Conn`]. Forms: `fetch_all ROW`, `fetch_optional ROW`, `fetch_one ROW`
/// (rows decoded as the type `ROW`), `rows`, `optional_row` (rows read by column name, see
/// [`Row`]) and `execute` (rows affected), each followed by the SQL and the values to bind;
/// `fetch_all` and `execute` also take, after `;`, a [`Spread`] bound after the values.
#[macro_export]
macro_rules! on_db {
    ($conn:expr, fetch_all $row:ty, $sql:expr $(, $bind:expr)* ; $spread:expr) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => $crate::sql::Spread::spread_postgres($spread, sqlx::query_as::<_, $row>($sql)$(.bind($bind))*).fetch_all(c).await?,
            $crate::sql::Conn::Sqlite(c) => $crate::sql::Spread::spread_sqlite($spread, sqlx::query_as::<_, $row>(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*).fetch_all(c).await?,
        }
    };
    ($conn:expr, execute, $sql:expr $(, $bind:expr)* ; $spread:expr) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => $crate::sql::Spread::spread_postgres($spread, sqlx::query($sql)$(.bind($bind))*).execute(c).await?.rows_affected(),
            $crate::sql::Conn::Sqlite(c) => $crate::sql::Spread::spread_sqlite($spread, sqlx::query(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*).execute(c).await?.rows_affected(),
        }
    };
    ($conn:expr, rows, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query($sql)$(.bind($bind))*.fetch_all(c).await?
                .into_iter().map($crate::sql::Row::Postgres).collect::<Vec<_>>(),
            $crate::sql::Conn::Sqlite(c) => sqlx::query(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.fetch_all(c).await?
                .into_iter().map($crate::sql::Row::Sqlite).collect::<Vec<_>>(),
        }
    };
    ($conn:expr, optional_row, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query($sql)$(.bind($bind))*.fetch_optional(c).await?
                .map($crate::sql::Row::Postgres),
            $crate::sql::Conn::Sqlite(c) => sqlx::query(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.fetch_optional(c).await?
                .map($crate::sql::Row::Sqlite),
        }
    };
    ($conn:expr, fetch_all $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.fetch_all(c).await?,
            $crate::sql::Conn::Sqlite(c) => sqlx::query_as::<_, $row>(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.fetch_all(c).await?,
        }
    };
    ($conn:expr, fetch_optional $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.fetch_optional(c).await?,
            $crate::sql::Conn::Sqlite(c) => sqlx::query_as::<_, $row>(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.fetch_optional(c).await?,
        }
    };
    ($conn:expr, fetch_one $row:ty, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query_as::<_, $row>($sql)$(.bind($bind))*.fetch_one(c).await?,
            $crate::sql::Conn::Sqlite(c) => sqlx::query_as::<_, $row>(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.fetch_one(c).await?,
        }
    };
    ($conn:expr, execute, $sql:expr $(, $bind:expr)* $(,)?) => {
        match $conn {
            $crate::sql::Conn::Postgres(c) => sqlx::query($sql)$(.bind($bind))*.execute(c).await?.rows_affected(),
            $crate::sql::Conn::Sqlite(c) => sqlx::query(&$crate::sql::sqlite_sql($sql))$(.bind($bind))*.execute(c).await?.rows_affected(),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_placeholders_are_rewritten() {
        assert_eq!(
            sqlite_sql("a = $1 AND b = json_insert(x, '$[#]', $12)"),
            "a = ?1 AND b = json_insert(x, '$[#]', ?12)"
        );
    }

    #[tokio::test]
    async fn one_query_runs_on_sqlite() -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:").await?;
        let mut conn = Conn::Sqlite(&mut connection);
        on_db!(
            conn.reborrow(),
            execute,
            "CREATE TABLE t (a INTEGER, b TEXT)"
        );
        let inserted = on_db!(
            conn.reborrow(),
            execute,
            "INSERT INTO t VALUES ($1, $2)",
            7_i64,
            "seven"
        );
        assert_eq!(inserted, 1);
        let row: (i64, String) = on_db!(
            conn.reborrow(),
            fetch_one(i64, String),
            "SELECT a, b FROM t WHERE a = $1",
            7_i64
        );
        assert_eq!(row, (7, "seven".to_string()));
        let rows = on_db!(conn.reborrow(), rows, "SELECT a, b FROM t");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].try_get::<String>("b")?, "seven");
        assert!(rows[0].try_get::<String>("missing").is_err());
        let none = on_db!(
            conn.reborrow(),
            optional_row,
            "SELECT a FROM t WHERE a = $1",
            8_i64
        );
        assert!(none.is_none());
        Ok(())
    }
}
