//! Phone numbers as callers say them and as SIP delivers them.
//!
//! Numbers are compared loosely because the same line shows up in different forms: the SIP
//! `From` user part (`+4930123456`), what a caller says ("030 123456"), or an international
//! prefix (`0049…`). Pure functions, no I/O.

/// Fewest digits two numbers must share for a suffix match (shorter numbers must be equal).
pub const MIN_SUFFIX_DIGITS: usize = 6;

/// Most digits an E.164 number has (ITU-T E.164 §6.2: 15), plus slack for extensions.
pub const MAX_DIGITS: usize = 20;

/// The number reduced to an optional leading `+` and its digits, or `None` when `s` is not a
/// phone number (letters, too few or too many digits).
///
/// Spaces, `-`, `.`, `/`, parentheses and a `tel:` prefix are ignored, as is a SIP URI wrapper
/// (`sip:+4930123456@host;user=phone`), so the SIP `From` user part can be passed as is.
///
/// # Example
/// ```
/// # use frontdesk::calendar::phone::normalize;
/// assert_eq!(normalize("+49 (30) 123-456").as_deref(), Some("+4930123456"));
/// assert_eq!(normalize("alice"), None);
/// ```
pub fn normalize(s: &str) -> Option<String> {
    let mut t = s.trim();
    for prefix in ["tel:", "sip:", "sips:"] {
        if t.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        {
            t = &t[prefix.len()..];
        }
    }
    if let Some((user, _host)) = t.split_once('@') {
        t = user;
    }
    if let Some((number, _params)) = t.split_once(';') {
        t = number;
    }
    let mut out = String::with_capacity(t.len());
    for (i, c) in t.chars().enumerate() {
        match c {
            '+' if i == 0 => out.push('+'),
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = out.trim_start_matches('+').len();
    (3..=MAX_DIGITS).contains(&digits).then_some(out)
}

/// Whether two phone numbers denote the same line.
///
/// Equal digit strings match. Otherwise leading zeros (trunk or `00` international prefix) are
/// dropped and one must end with the other, with at least [`MIN_SUFFIX_DIGITS`] digits in common,
/// so `+49 30 1234567` matches `030 1234567`. Non-numbers never match.
///
/// # Example
/// ```
/// # use frontdesk::calendar::phone::phones_match;
/// assert!(phones_match("+49 30 1234567", "030 1234567"));
/// assert!(!phones_match("+49 30 1234567", "+49 30 7654321"));
/// ```
pub fn phones_match(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (normalize(a), normalize(b)) else {
        return false;
    };
    let a = a.trim_start_matches('+');
    let b = b.trim_start_matches('+');
    if a == b {
        return true;
    }
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= MIN_SUFFIX_DIGITS && long.ends_with(short)
}

/// The last `n` digits of a number, for display to someone who should not see all of it
/// (`…4567`).
pub fn masked(s: &str, n: usize) -> String {
    let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(n)..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_common_forms() {
        assert_eq!(normalize("+49 30 1234567").as_deref(), Some("+49301234567"));
        assert_eq!(normalize("(212) 555-0142").as_deref(), Some("2125550142"));
        assert_eq!(
            normalize("tel:+1-212-555-0142").as_deref(),
            Some("+12125550142")
        );
        assert_eq!(
            normalize("sip:+4930123456@pbx.example;user=phone").as_deref(),
            Some("+4930123456")
        );
        assert_eq!(normalize("alice"), None);
        assert_eq!(normalize("12"), None);
        assert_eq!(normalize("1+2345"), None);
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("123456789012345678901"), None);
    }

    #[test]
    fn matches_national_and_international_forms() {
        assert!(phones_match("+49 30 1234567", "030 1234567"));
        assert!(phones_match("0049 30 1234567", "+49301234567"));
        assert!(phones_match("+1 212 555 0142", "(212) 555-0142"));
        assert!(phones_match("555", "555"));
        assert!(!phones_match("+49 30 1234567", "4567"));
        assert!(!phones_match("+49 30 1234567", "+49 30 1234568"));
        assert!(!phones_match("alice", "alice"));
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "té",
            "tél:123",
            "ßip:+49",
            "€€€€€",
            "+",
            "++49",
            "sip:@",
            ";",
            "@",
            "\u{0}",
        ] {
            let _ = normalize(s);
            let _ = phones_match(s, "+49 30 1234567");
            let _ = masked(s, 4);
        }
    }

    #[test]
    fn masks_all_but_the_tail() {
        assert_eq!(masked("+49 30 1234567", 4), "…4567");
        assert_eq!(masked("12", 4), "…12");
    }
}
