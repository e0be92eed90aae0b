//! Database URLs and opening pools: `sqlite://PATH` (the embedded default) or
//! `postgres://…`, where a PostgreSQL URL may carry `?schema=NAME` as AutoGPT's Prisma URLs
//! do. Both services open their database here and apply their own migrations.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("invalid database URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// A parsed database URL: `sqlite://PATH` or `postgres://…` (also `postgresql://`), where a
/// PostgreSQL URL may carry `?schema=NAME` as AutoGPT's Prisma URLs do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres { url: String, schema: Option<String> },
    Sqlite { path: PathBuf },
}

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, DatabaseError> {
        let invalid = |reason: &str| DatabaseError::InvalidUrl {
            url: redact(text),
            reason: reason.to_string(),
        };
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let (base, query) = text.split_once('?').unwrap_or((text, ""));
            let mut schema = None;
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("schema", value)) => schema = Some(value.to_string()),
                    _ => kept.push(pair),
                }
            }
            if let Some(name) = &schema
                && !is_plain_identifier(name)
            {
                return Err(invalid(
                    "schema must be 1-63 letters, digits or underscores",
                ));
            }
            let url = if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            PgConnectOptions::from_str(&url).map_err(|e| invalid(&e.to_string()))?;
            return Ok(DatabaseUrl::Postgres { url, schema });
        }
        let rest = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .ok_or_else(|| invalid("expected sqlite://PATH or postgres://USER@HOST/DATABASE"))?;
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        if path.is_empty() {
            return Err(invalid("the SQLite path is empty"));
        }
        Ok(DatabaseUrl::Sqlite {
            path: PathBuf::from(path),
        })
    }

    /// The URL with any password hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Postgres { url, schema } => match schema {
                Some(schema) => format!("{} (schema {schema})", redact(url)),
                None => redact(url),
            },
            DatabaseUrl::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres { .. } => "postgres",
            DatabaseUrl::Sqlite { .. } => "sqlite",
        }
    }

    /// How to open one PostgreSQL connection outside the pool (with the schema as its search
    /// path); `None` for SQLite.
    pub fn pg_options(&self) -> Result<Option<PgConnectOptions>, DatabaseError> {
        let DatabaseUrl::Postgres { url, schema } = self else {
            return Ok(None);
        };
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        Ok(Some(options))
    }
}

/// Whether `name` is a PostgreSQL identifier that needs no quoting care: 1 to 63 letters,
/// digits or underscores (a schema or table name put into SQL between double quotes).
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// An open database: a pool of either backend.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Database {
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Postgres(_) => "postgres",
            Database::Sqlite(_) => "sqlite",
        }
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        match self {
            Database::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(pool) => pool.close().await,
            Database::Sqlite(pool) => pool.close().await,
        }
    }
}

/// Connects, and creates the schema (PostgreSQL) or the file and its directory (SQLite) when
/// missing. Each service applies its own migrations to what this opens.
pub async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<Database, DatabaseError> {
    match url {
        DatabaseUrl::Postgres { schema, .. } => {
            let options = url.pg_options()?.ok_or_else(|| DatabaseError::InvalidUrl {
                url: url.redacted(),
                reason: "not a PostgreSQL URL".into(),
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            if let Some(schema) = schema {
                // The name was checked to be letters, digits and underscores only.
                let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
                if let Err(error) = sqlx::query(&create).execute(&pool).await {
                    // Two replicas creating the same schema at once: one loses the race.
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    )
                    .bind(schema)
                    .fetch_one(&pool)
                    .await?;
                    if !exists {
                        return Err(error.into());
                    }
                }
            }
            Ok(Database::Postgres(pool))
        }
        DatabaseUrl::Sqlite { path } => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| DatabaseError::InvalidUrl {
                    url: path.display().to_string(),
                    reason: format!("cannot create directory {}: {e}", parent.display()),
                })?;
            }
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a committed change survives a power cut, not only a process crash.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .connect_with(options)
                .await?;
            Ok(Database::Sqlite(pool))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_url_schema_parameter_is_split_off() {
        let url =
            DatabaseUrl::parse("postgresql://u:secret@db:5432/app?schema=platform&sslmode=disable")
                .unwrap();
        assert_eq!(
            url,
            DatabaseUrl::Postgres {
                url: "postgresql://u:secret@db:5432/app?sslmode=disable".into(),
                schema: Some("platform".into())
            }
        );
        assert!(!url.redacted().contains("secret"), "{}", url.redacted());
    }

    #[test]
    fn bad_urls_are_rejected_with_a_reason() {
        for (text, reason) in [
            ("mysql://x", "expected sqlite://PATH"),
            ("sqlite://", "path is empty"),
            ("postgres://h/db?schema=a;drop", "schema must be"),
        ] {
            let error = DatabaseUrl::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
        assert_eq!(
            DatabaseUrl::parse("sqlite://./data/scheduler.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "./data/scheduler.db".into()
            }
        );
    }
}
