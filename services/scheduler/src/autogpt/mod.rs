//! What the scheduler does for the AutoGPT platform, apart from the API they share: AutoGPT's
//! routes (`POST /<method>`, [`routes`]), its maintenance jobs as system tasks ([`tasks`]), and
//! the migration of its APScheduler jobs (`scheduler import-apscheduler`, [`import`]).

pub mod import;
pub(crate) mod routes;
pub(crate) mod tasks;
