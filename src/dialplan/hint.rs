//! "Did you mean …?" hints: a small edit distance over the names an admin could have meant.
//!
//! Pure functions, no I/O.

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions), on characters,
/// case-insensitive.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` when a candidate is close, else `expected one of: a, b, c` (or `none
/// defined` when there are no candidates).
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    match closest(word, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let all: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            if all.is_empty() {
                "none is defined".to_owned()
            } else {
                format!("expected one of {}", all.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_transpositions() {
        assert_eq!(distance("greeting", "greeting"), 0);
        assert_eq!(distance("greting", "greeting"), 1);
        assert_eq!(distance("agnet", "agent"), 1, "a transposition is one edit");
        assert_eq!(distance("Voice", "voice"), 0);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_only_suggests_plausible_typos() {
        let keys = ["greeting", "voice", "model"];
        assert_eq!(closest("greetng", keys), Some("greeting"));
        assert_eq!(closest("voise", keys), Some("voice"));
        assert_eq!(closest("xyz", keys), None);
        assert_eq!(did_you_mean("modle", keys), "did you mean `model`?");
        assert_eq!(
            did_you_mean("xyz", keys),
            "expected one of `greeting`, `voice`, `model`"
        );
        assert_eq!(did_you_mean("xyz", [] as [&str; 0]), "none is defined");
    }
}
