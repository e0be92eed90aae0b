//! `cargo xtask docs`: the book in `docs/`, built with mdBook's own library into `target/book`,
//! offline (the theme is mdBook's, bundled in the crate).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The workspace root (this crate is `crates/xtask`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask lies two levels down")
        .to_path_buf()
}

/// Builds the book into `out` (its `build-dir`, `target/book`, when `None`); returns where.
pub(crate) fn build(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut book = mdbook_driver::MDBook::load(root().join("docs"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("loading the book in docs/")?;
    if let Some(out) = out {
        book.config.build.build_dir = out.to_path_buf();
    }
    let destination = book.root.join(&book.config.build.build_dir);
    book.build()
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("building the book")?;
    Ok(destination.canonicalize().unwrap_or(destination))
}

pub(crate) fn run() -> anyhow::Result<()> {
    let out = build(None)?;
    println!("the book is in {}", out.join("index.html").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_book_builds_with_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let out = super::build(Some(dir.path())).unwrap();
        for page in ["introduction", "configuration", "targets", "benchmarks"] {
            let html = std::fs::read_to_string(out.join(format!("{page}.html")))
                .unwrap_or_else(|e| panic!("{page}.html: {e}"));
            assert!(html.contains("<h1"), "{page}.html has its title");
        }
        assert!(
            out.join("console/timeline.png").is_file(),
            "images are copied"
        );
    }
}
