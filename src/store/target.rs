//! Where the database is: the value of `--db` (a SQLite path or URL, or a PostgreSQL URL) and
//! the PostgreSQL password, kept out of everything that is displayed or logged.
//!
//! Accepted forms (issue 13):
//! * `./frontdesk.db`, `/var/lib/frontdesk/frontdesk.db`: a SQLite file (created if missing);
//! * `sqlite://./frontdesk.db`, `sqlite:///var/lib/frontdesk/frontdesk.db`, `sqlite:x.db`;
//! * `postgres://user@host[:port]/database[?host=/run/postgresql&sslmode=require…]` (or
//!   `postgresql://`): the parameters of libpq's URI form that sqlx understands.
//!
//! The PostgreSQL password comes from, in this order: `--db-password-file` (first line), the
//! `PGPASSWORD` environment variable, the URL itself. [`DbTarget`]'s `Display` and `Debug`
//! never show it.

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

/// Default `--db`: the SQLite file `./frontdesk.db`.
pub const DEFAULT_DB: &str = "./frontdesk.db";

/// Errors of [`DbTarget::parse`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The value looks like a URL of a database frontdesk does not support.
    #[error("unsupported database URL scheme {0:?}: use a SQLite path, sqlite://PATH or postgres://USER@HOST/DB")]
    Scheme(String),
    /// A `postgres://` URL that does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// The password file cannot be read.
    #[error("cannot read the database password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// An empty `--db`.
    #[error("empty --db: give a SQLite path or a postgres:// URL")]
    Empty,
}

/// A database password; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The secret text (only for building the connection).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The database frontdesk uses (the parsed `--db`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbTarget {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres {
        /// The URL without its password.
        url: Url,
        /// The password, if any (see the module docs for where it comes from).
        password: Option<Password>,
    },
}

impl DbTarget {
    /// Parses a `--db` value; `password_file` is `--db-password-file`. `PGPASSWORD` is read here.
    ///
    /// # Errors
    /// [`TargetError`] for an unknown scheme, a malformed PostgreSQL URL, or an unreadable
    /// password file.
    pub fn parse(value: &str, password_file: Option<&Path>) -> Result<DbTarget, TargetError> {
        let env = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty());
        Self::parse_with(value, password_file, env)
    }

    fn parse_with(
        value: &str,
        password_file: Option<&Path>,
        env_password: Option<String>,
    ) -> Result<DbTarget, TargetError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(TargetError::Empty);
        }
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let mut url = Url::parse(value).map_err(|e| TargetError::Url(e.to_string()))?;
            let in_url = url
                .password()
                .map(|p| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .filter(|p| !p.is_empty());
            let _ = url.set_password(None);
            let from_file = match password_file {
                Some(path) => Some(read_password(path)?),
                None => None,
            };
            let password = from_file.or(env_password).or(in_url).map(Password);
            return Ok(DbTarget::Postgres { url, password });
        }
        if let Some(rest) = lower.strip_prefix("sqlite:") {
            let offset = value.len() - rest.len();
            let path = &value[offset..];
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(TargetError::Empty);
            }
            return Ok(DbTarget::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(TargetError::Scheme(scheme.to_owned()));
        }
        Ok(DbTarget::Sqlite(PathBuf::from(value)))
    }

    /// Which backend this target uses.
    pub fn backend(&self) -> super::Backend {
        match self {
            DbTarget::Sqlite(_) => super::Backend::Sqlite,
            DbTarget::Postgres { .. } => super::Backend::Postgres,
        }
    }

    /// The connection URL including the password, for the driver only (never display it).
    pub(crate) fn connect_url(&self) -> Url {
        match self {
            DbTarget::Sqlite(path) => {
                use sqlx::ConnectOptions;
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .to_url_lossy()
            }
            DbTarget::Postgres { url, password } => {
                let mut url = url.clone();
                if let Some(p) = password {
                    let _ = url.set_password(Some(p.expose()));
                }
                url
            }
        }
    }
}

fn read_password(path: &Path) -> Result<String, TargetError> {
    let text = std::fs::read_to_string(path).map_err(|e| TargetError::PasswordFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

impl fmt::Display for DbTarget {
    /// The path, or the URL without a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbTarget::Sqlite(path) => write!(f, "{}", path.display()),
            DbTarget::Postgres { url, .. } => write!(f, "{url}"),
        }
    }
}

impl Default for DbTarget {
    fn default() -> DbTarget {
        DbTarget::Sqlite(PathBuf::from(DEFAULT_DB))
    }
}

impl From<&Path> for DbTarget {
    fn from(p: &Path) -> DbTarget {
        DbTarget::Sqlite(p.to_path_buf())
    }
}

impl From<&PathBuf> for DbTarget {
    fn from(p: &PathBuf) -> DbTarget {
        DbTarget::Sqlite(p.clone())
    }
}

impl From<PathBuf> for DbTarget {
    fn from(p: PathBuf) -> DbTarget {
        DbTarget::Sqlite(p)
    }
}

impl From<&DbTarget> for DbTarget {
    fn from(t: &DbTarget) -> DbTarget {
        t.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> DbTarget {
        DbTarget::parse_with(v, None, None).expect("parses")
    }

    #[test]
    fn paths_and_sqlite_urls_are_sqlite_files() {
        assert_eq!(
            parse("./frontdesk.db"),
            DbTarget::Sqlite("./frontdesk.db".into())
        );
        assert_eq!(
            parse("/var/lib/fd.db"),
            DbTarget::Sqlite("/var/lib/fd.db".into())
        );
        assert_eq!(parse("sqlite://./x.db"), DbTarget::Sqlite("./x.db".into()));
        assert_eq!(
            parse("sqlite:///var/x.db"),
            DbTarget::Sqlite("/var/x.db".into())
        );
        assert_eq!(parse("SQLITE:x.db"), DbTarget::Sqlite("x.db".into()));
        assert_eq!(DbTarget::default(), DbTarget::Sqlite(DEFAULT_DB.into()));
    }

    #[test]
    fn unknown_schemes_and_empty_values_are_refused() {
        assert_eq!(
            DbTarget::parse_with("mysql://h/db", None, None),
            Err(TargetError::Scheme("mysql".into()))
        );
        assert_eq!(
            DbTarget::parse_with("  ", None, None),
            Err(TargetError::Empty)
        );
        assert!(DbTarget::parse_with("postgres://[bad", None, None).is_err());
    }

    #[test]
    fn postgres_password_never_shows_and_follows_precedence() {
        let t = parse("postgres://fd:s%40cret@db.example:5433/frontdesk?sslmode=require");
        assert_eq!(
            t.to_string(),
            "postgres://fd@db.example:5433/frontdesk?sslmode=require"
        );
        assert!(!format!("{t:?}").contains("cret"), "{t:?}");
        assert_eq!(t.connect_url().password(), Some("s%40cret"));

        // PGPASSWORD beats the URL; the file beats both.
        let t = DbTarget::parse_with("postgres://fd:url@h/db", None, Some("env".into()))
            .expect("parses");
        assert_eq!(t.connect_url().password(), Some("env"));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored\n").expect("write");
        let t = DbTarget::parse_with("postgres://fd@h/db", Some(&file), Some("env".into()))
            .expect("parses");
        assert_eq!(t.connect_url().password(), Some("from-file"));
        assert!(matches!(
            DbTarget::parse_with("postgres://fd@h/db", Some(&dir.path().join("nope")), None),
            Err(TargetError::PasswordFile { .. })
        ));
    }
}
