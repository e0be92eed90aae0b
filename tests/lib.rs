//! Cross-service checks live in this package's tests (`deploy.rs`); the library is empty.
