//! One process per SQLite store: a lock file beside the database (`<file>.lock`, holding the
//! pid) that a second scheduler, or an import, cannot take while the first holds it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another scheduler process{holder} is using the SQLite database {database} (it holds \
         {lock}). A SQLite store serves one process: stop the other one, or use PostgreSQL to \
         run several replicas",
        holder = .holder.as_ref().map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        database = .database.display(),
        lock = .lock.display()
    )]
    Held {
        database: PathBuf,
        lock: PathBuf,
        holder: Option<String>,
    },
    #[error("cannot lock {}: {error}", .path.display())]
    Io { path: PathBuf, error: String },
}

/// Held for the life of a process that uses a SQLite store.
pub struct SoleProcess {
    _lock: Flock<File>,
    path: PathBuf,
}

impl SoleProcess {
    /// Takes the lock file beside the SQLite database, or says who holds it.
    pub fn acquire(database: &Path) -> Result<SoleProcess, LockError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |error: &dyn std::fmt::Display| LockError::Io {
            path: path.clone(),
            error: error.to_string(),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io(&e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(&e))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = Some(holder.trim().to_string()).filter(|h| !h.is_empty());
                return Err(LockError::Held {
                    database: database.to_path_buf(),
                    lock: path,
                    holder,
                });
            }
            Err((_, errno)) => return Err(io(&errno)),
        };
        lock.set_len(0).map_err(|e| io(&e))?;
        writeln!(&mut *lock, "{}", std::process::id()).map_err(|e| io(&e))?;
        Ok(SoleProcess { _lock: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
