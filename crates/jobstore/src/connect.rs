//! Opening the scheduler's database: [`service_kit::database`] opens the pool, this applies
//! the backend's embedded migrations and hands out the persisted stores.

use std::sync::Arc;

use service_kit::{Database, DatabaseUrl};

use crate::model::StoreName;
use crate::sql::SqlStore;
use crate::store::{AlertLog, ChangeLog, JobStore, StoreError};
use crate::watches::WatchStore;

/// Connects, creates the schema or file if needed, and applies the embedded migrations.
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Database, StoreError> {
    let database = service_kit::database::open(url, max_connections).await?;
    migrate(&database).await?;
    Ok(database)
}

/// Applies the embedded migrations of the database's backend.
pub async fn migrate(database: &Database) -> Result<(), StoreError> {
    match database {
        Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        Database::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
    }
    Ok(())
}

/// The watches on a migrated database, beside the `execution` jobstore's schedules.
pub fn watches(database: &Database) -> Arc<dyn WatchStore> {
    Arc::new(SqlStore::new(database, StoreName::Execution))
}

/// The audit log of a migrated database.
pub fn change_log(database: &Database) -> Arc<dyn ChangeLog> {
    Arc::new(SqlStore::new(database, StoreName::Execution))
}

/// The alerts of a migrated database.
pub fn alert_log(database: &Database) -> Arc<dyn AlertLog> {
    Arc::new(SqlStore::new(database, StoreName::Execution))
}

/// The persisted store of one jobstore on a migrated database.
pub fn persisted(database: &Database, jobstore: StoreName) -> Arc<dyn JobStore> {
    Arc::new(SqlStore::new(database, jobstore))
}
