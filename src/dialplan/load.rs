//! Shell: reading a dialplan directory from disk. The only file-system access of the dialplan,
//! besides the `frontdesk dialplan` commands (`report`) and live reload (`reload`).

use std::io;
use std::path::{Path, PathBuf};

use super::compile::Files;
use super::{Dialplan, Error};

/// The real file system, for [`Dialplan::compile_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FsFiles;

impl Files for FsFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

impl Dialplan {
    /// Loads and compiles every `*.toml` file of `dir` (not its subdirectories), in file-name
    /// order; hidden files (`.name.toml`, editor lock files) are skipped. Files the plan refers
    /// to are read relative to `dir`.
    ///
    /// # Errors
    /// Every problem found, in every file: an unreadable directory or file, no dialplan file,
    /// TOML syntax, unknown keys, bad values, undefined names, no routes at all.
    pub fn load_dir(dir: &Path) -> Result<Dialplan, Vec<Error>> {
        let (sources, mut errors) = read_sources(dir)?;
        match Dialplan::compile_with(&sources, &FsFiles) {
            Ok(plan) if errors.is_empty() => Ok(plan),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }
}

/// Dialplan files with their text, in evaluation order.
pub(crate) type Sources = Vec<(PathBuf, String)>;

/// The dialplan files of `dir` with their text, in file-name order, and the files that could not
/// be read.
///
/// # Errors
/// The directory cannot be listed, or holds no `*.toml` file.
pub(crate) fn read_sources(dir: &Path) -> Result<(Sources, Vec<Error>), Vec<Error>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![
            Error::file(dir, format!("cannot read the dialplan directory: {e}")).with_hint(Some(
                "create it, or pass another directory (--dialplans DIR)".to_owned(),
            )),
        ]
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(vec![Error::file(
            dir,
            "the dialplan directory has no *.toml file",
        )
        .with_hint(Some("see docs/dialplans.md for an example".to_owned()))]);
    }
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => sources.push((f, text)),
            Err(e) => errors.push(Error::file(f, format!("cannot read the file: {e}"))),
        }
    }
    Ok((sources, errors))
}
