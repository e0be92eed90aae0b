//! One backend matrix for every crate's tests: [`backend_matrix!`](crate::backend_matrix)
//! turns each case into one test per backend, `sqlite::<case>`, `postgres::<case>` (and
//! `memory::<case>` where a crate has an in-memory store), so each runs, passes or fails on
//! its own.

/// The store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The jobstore's in-memory store.
    Memory,
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A PostgreSQL schema of the test's own.
    Postgres,
}

impl Backend {
    /// The backend a matrix module is named after (`memory`, `sqlite`, `postgres`).
    pub fn named(module: &str) -> Backend {
        match module {
            "memory" => Backend::Memory,
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("backend_matrix!: no backend is named '{other}'"),
        }
    }
}

/// Generates one test per backend and case. Each case is an `async fn case(backend: Backend)`
/// in the module that invokes the macro:
///
/// ```ignore
/// test_support::backend_matrix!([sqlite, postgres] [claims_once, outcomes_are_recorded]);
/// ```
///
/// makes `sqlite::claims_once`, `postgres::claims_once`, and so on, each a multi-threaded tokio
/// test calling `claims_once(Backend::Sqlite)` (or `Postgres`).
///
/// With `fixture = make;` first, each case takes what `async fn make(backend: Backend) ->
/// Option<(T, G)>` gives it instead: the test keeps `G` (a directory, a schema) alive while the
/// case runs on `T`, and returns at once when `make` gives `None` (PostgreSQL unreachable
/// outside CI).
#[macro_export]
macro_rules! backend_matrix {
    ([$($backend:ident),+ $(,)?] $cases:tt) => {
        $( $crate::backend_matrix!(@module $backend $cases); )+
    };
    (fixture = $fixture:ident; [$($backend:ident),+ $(,)?] $cases:tt) => {
        $( $crate::backend_matrix!(@fixture $fixture $backend $cases); )+
    };
    (@fixture $fixture:ident $backend:ident [$($case:ident),+ $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $crate::Backend::named(stringify!($backend));
                    let Some((input, _kept)) = super::$fixture(backend).await else {
                        return;
                    };
                    super::$case(input).await
                }
            )+
        }
    };
    (@module $backend:ident [$($case:ident),+ $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::Backend::named(stringify!($backend))).await
                }
            )+
        }
    };
}
