//! One SQL text for both backends: statements are written once with SQLite's `?` / `?N`
//! placeholders and rewritten to PostgreSQL's `$N` the first time they run on PostgreSQL (the
//! rewritten text is cached per call site for the life of the process).
//!
//! Use the [`sql!`](crate::sql) macro; it needs the [`Backend`] and a `&'static str` (a literal or `concat!`). Text
//! inside single-quoted SQL literals and double-quoted identifiers is never rewritten. Anything
//! that is not the same in both dialects (e.g. `BEGIN IMMEDIATE`, `pg_advisory_xact_lock`) is
//! chosen with a `match` on the backend next to the statement, never by string surgery.

use std::sync::OnceLock;

use super::Backend;

/// The text of a statement for `backend`: `sqlite` as written, or its `$N` form (computed once
/// into `pg`).
#[doc(hidden)]
pub fn for_backend(
    backend: Backend,
    sqlite: &'static str,
    pg: &'static OnceLock<String>,
) -> &'static str {
    match backend {
        Backend::Sqlite => sqlite,
        Backend::Postgres => pg.get_or_init(|| to_dollar_placeholders(sqlite)).as_str(),
    }
}

/// A statement literal in the dialect of a backend: `sql!(backend, "SELECT … WHERE id = ?")`.
///
/// Expands to a `&'static str` (SQLite: the literal; PostgreSQL: `?` → `$1`, `$2`, … and
/// `?N` → `$N`, cached per call site).
#[macro_export]
macro_rules! sql {
    ($backend:expr, $text:expr) => {{
        static PG: ::std::sync::OnceLock<String> = ::std::sync::OnceLock::new();
        $crate::store::sql::for_backend($backend, $text, &PG)
    }};
}

/// A statement assembled at run time (from constants only; every value is bound) in the dialect
/// of `backend`. Prefer [`sql!`](crate::sql) with a literal.
pub fn dynamic(backend: Backend, sqlite: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(match backend {
        Backend::Sqlite => sqlite.to_owned(),
        Backend::Postgres => to_dollar_placeholders(sqlite),
    })
}

/// Rewrites SQLite placeholders (`?` numbered left to right, `?N` kept as `N`) to PostgreSQL's
/// `$N`, leaving quoted literals and identifiers alone.
pub fn to_dollar_placeholders(sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 8);
    let mut next = 1u32;
    let mut quote: Option<char> = None;
    let mut chars = sqlite.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_left_to_right() {
        assert_eq!(
            to_dollar_placeholders("UPDATE calls SET a = ?, b = ? WHERE id = ?"),
            "UPDATE calls SET a = $1, b = $2 WHERE id = $3"
        );
    }

    #[test]
    fn numbered_placeholders_keep_their_number() {
        assert_eq!(
            to_dollar_placeholders("WHERE (?1 IS NULL OR k = ?1) AND (?12 = 1)"),
            "WHERE ($1 IS NULL OR k = $1) AND ($12 = 1)"
        );
    }

    #[test]
    fn quoted_text_is_left_alone() {
        assert_eq!(
            to_dollar_placeholders("SELECT '?', \"a?b\", 'it''s ?' FROM t WHERE x = ?"),
            "SELECT '?', \"a?b\", 'it''s ?' FROM t WHERE x = $1"
        );
    }

    #[test]
    fn macro_picks_the_dialect() {
        let q = |b| crate::sql!(b, "SELECT 1 WHERE ? = ?");
        assert_eq!(q(Backend::Sqlite), "SELECT 1 WHERE ? = ?");
        assert_eq!(q(Backend::Postgres), "SELECT 1 WHERE $1 = $2");
        // Cached: the same text again.
        assert_eq!(q(Backend::Postgres), "SELECT 1 WHERE $1 = $2");
    }
}
