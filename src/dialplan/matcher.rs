//! Number patterns for a route's `to` (called number) and `from` (caller number).
//!
//! Numbers and exact/prefix patterns are compared after [`normalize_number`], which drops the
//! visual separators admins like to write (`+1 (555) 010-0100` equals `+15550100100`). A regex is
//! matched against the whole normalized number (it is anchored for the admin). Pure: no I/O.

use std::fmt;

use super::ValueError;

/// Longest regex program accepted (bytes of compiled automaton), so that a pathological pattern
/// is an error at compile time instead of a slow call path.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a route matches a number.
#[derive(Debug, Clone)]
pub enum NumberMatch {
    /// `"*"`: every call, including calls without a number.
    Any,
    /// `"+1555*"` or `{ prefix = "+1555" }`: numbers starting with the prefix (normalized).
    Prefix(String),
    /// `"+15550100"` or `{ exact = "…" }`: exactly this number (normalized).
    Exact(String),
    /// `{ regex = '^\+1555\d{4}$' }`: the whole normalized number matches the regex.
    Regex(regex::Regex),
}

impl PartialEq for NumberMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (NumberMatch::Any, NumberMatch::Any) => true,
            (NumberMatch::Prefix(a), NumberMatch::Prefix(b))
            | (NumberMatch::Exact(a), NumberMatch::Exact(b)) => a == b,
            (NumberMatch::Regex(a), NumberMatch::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// Drops spaces, `-`, `.`, `(` and `)` from a number (`+1 (555) 010-0100` → `+15550100100`).
pub fn normalize_number(number: &str) -> String {
    number
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '.' | '(' | ')'))
        .collect()
}

impl NumberMatch {
    /// The shorthand form: `*`, `PREFIX*` or `EXACT`.
    pub(crate) fn shorthand(text: &str) -> Result<NumberMatch, ValueError> {
        let t = text.trim();
        if t == "*" {
            return Ok(NumberMatch::Any);
        }
        let (body, prefix) = match t.strip_suffix('*') {
            Some(p) => (p, true),
            None => (t, false),
        };
        if let Some(i) = body.find(['*', '?', '[', '^', '$', '\\', '|']) {
            return Err(ValueError {
                message: format!(
                    "`{text}` is not a number pattern: `{}` is only allowed as a final `*`",
                    &body[i..i + 1]
                ),
                hint: Some(
                    "for anything but exact numbers and prefixes, write { regex = '…' }".to_owned(),
                ),
                at: Some(i..i + 1),
            });
        }
        let n = normalize_number(body);
        if n.is_empty() {
            return Err(ValueError {
                message: "empty number pattern".to_owned(),
                hint: Some("write \"*\" to match every number".to_owned()),
                at: None,
            });
        }
        Ok(if prefix {
            NumberMatch::Prefix(n)
        } else {
            NumberMatch::Exact(n)
        })
    }

    /// `{ exact = "…" }` / `{ prefix = "…" }`.
    pub(crate) fn literal(text: &str, prefix: bool) -> Result<NumberMatch, ValueError> {
        let n = normalize_number(text);
        if n.is_empty() {
            return Err(ValueError {
                message: "empty number pattern".to_owned(),
                hint: Some("remove the condition to match every number".to_owned()),
                at: None,
            });
        }
        Ok(if prefix {
            NumberMatch::Prefix(n)
        } else {
            NumberMatch::Exact(n)
        })
    }

    /// `{ regex = "…" }`: compiled anchored (`^(?:…)$`).
    pub(crate) fn regex(pattern: &str) -> Result<NumberMatch, ValueError> {
        regex_syntax_check(pattern)?;
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(NumberMatch::Regex)
            .map_err(|e| regex_error(pattern, &e))
    }

    /// Whether `number` (unnormalized; `None` when the call has none) matches.
    pub fn matches(&self, number: Option<&str>) -> bool {
        let Some(number) = number else {
            return matches!(self, NumberMatch::Any);
        };
        let n = normalize_number(number);
        match self {
            NumberMatch::Any => true,
            NumberMatch::Prefix(p) => n.starts_with(p.as_str()),
            NumberMatch::Exact(e) => n == *e,
            NumberMatch::Regex(r) => r.is_match(&n),
        }
    }
}

/// Compiles the pattern unanchored first, so that error positions refer to the admin's text.
fn regex_syntax_check(pattern: &str) -> Result<(), ValueError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| regex_error(pattern, &e))
}

/// Turns the regex crate's multi-line error into one line and a position inside the pattern.
fn regex_error(pattern: &str, e: &regex::Error) -> ValueError {
    match e {
        regex::Error::Syntax(text) => {
            let message = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or("invalid syntax")
                .to_owned();
            // The error repeats the pattern on an indented line and puts `^` under the problem.
            let lines: Vec<&str> = text.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim() == pattern.trim())
                .and_then(|i| {
                    let pattern_line = lines[i];
                    let indent = pattern_line.len() - pattern_line.trim_start().len();
                    let carets = lines.get(i + 1)?;
                    let start = carets.find('^')?.checked_sub(indent)?;
                    let len = carets.trim().chars().filter(|c| *c == '^').count().max(1);
                    let start = pattern.char_indices().nth(start).map(|(b, _)| b)?;
                    let end = pattern[start..]
                        .char_indices()
                        .nth(len)
                        .map_or(pattern.len(), |(b, _)| start + b);
                    Some(start..end)
                });
            ValueError {
                message: format!("invalid regex: {message}"),
                hint: Some(
                    "write regexes in single quotes ('…') so that backslashes need no escaping"
                        .to_owned(),
                ),
                at,
            }
        }
        regex::Error::CompiledTooBig(limit) => ValueError {
            message: format!("regex is too large (over {limit} bytes compiled)"),
            hint: Some("simplify the pattern or split it into several routes".to_owned()),
            at: None,
        },
        other => ValueError {
            message: format!("invalid regex: {other}"),
            hint: None,
            at: None,
        },
    }
}

impl fmt::Display for NumberMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberMatch::Any => f.write_str("*"),
            NumberMatch::Prefix(p) => write!(f, "{p}*"),
            NumberMatch::Exact(e) => f.write_str(e),
            NumberMatch::Regex(r) => {
                let s = r.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                write!(f, "/{inner}/")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_any_prefix_exact() {
        assert_eq!(NumberMatch::shorthand("*"), Ok(NumberMatch::Any));
        assert_eq!(
            NumberMatch::shorthand("+1 555*"),
            Ok(NumberMatch::Prefix("+1555".into()))
        );
        assert_eq!(
            NumberMatch::shorthand("+1 (555) 010-0100"),
            Ok(NumberMatch::Exact("+15550100100".into()))
        );
        let e = NumberMatch::shorthand("1*2").expect_err("inner star");
        assert_eq!(e.at, Some(1..2));
        assert!(NumberMatch::shorthand("").is_err());
        assert!(NumberMatch::shorthand("^123").is_err());
    }

    #[test]
    fn matching_normalizes_the_number() {
        let exact = NumberMatch::shorthand("+15550100").expect("valid");
        assert!(exact.matches(Some("+1 555 0100")));
        assert!(!exact.matches(Some("+155501000")));
        assert!(!exact.matches(None));
        let prefix = NumberMatch::shorthand("+49 30*").expect("valid");
        assert!(prefix.matches(Some("+4930123")));
        assert!(!prefix.matches(Some("+4940123")));
        assert!(NumberMatch::Any.matches(None));
        assert!(NumberMatch::Any.matches(Some("frontdesk")));
    }

    #[test]
    fn regexes_are_anchored_to_the_whole_number() {
        let r = NumberMatch::regex(r"\+1555\d{4}").expect("valid");
        assert!(r.matches(Some("+15550100")));
        assert!(
            r.matches(Some("+1 555 0100")),
            "matched after normalization"
        );
        assert!(!r.matches(Some("+155501000")), "anchored at the end");
        assert!(!r.matches(Some("0+15550100")), "anchored at the start");
        let alt = NumberMatch::regex("100|200").expect("valid");
        assert!(alt.matches(Some("200")));
        assert!(
            !alt.matches(Some("1200")),
            "alternation is grouped before anchoring"
        );
        assert_eq!(alt.to_string(), "/100|200/");
    }

    #[test]
    fn regex_errors_are_one_line_with_a_position() {
        let e = NumberMatch::regex(r"^\+49(30").expect_err("unclosed group");
        assert_eq!(e.message, "invalid regex: unclosed group");
        assert_eq!(e.at, Some(5..6), "{e:?}");
        let e = NumberMatch::regex(r"\+1\q").expect_err("bad escape");
        assert!(e.message.starts_with("invalid regex: "), "{e:?}");
        assert!(e.at.is_some(), "{e:?}");
        assert!(NumberMatch::regex("a{1000}{1000}").is_err(), "too big");
    }
}
