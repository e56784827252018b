//! "Did you mean" suggestions for mistyped names (ops, surrogates, neurons, settings).

/// The candidate closest to `name` (case-insensitive Levenshtein distance), if it is close
/// enough to be a plausible typo: at most a third of the longer name's letters differ.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| {
            let longest = c.len().max(name.len());
            // One- and two-letter names are all close: suggesting among them is noise.
            *d == 0 || (longest > 2 && *d <= longest.div_ceil(3))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` for the [`nearest`] candidate, or `""`: for error messages.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(name, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["exp", "sigmoid", "ATan", "LIFNode"];
        assert_eq!(nearest("sigmod", names), Some("sigmoid"));
        assert_eq!(nearest("expp", names), Some("exp"));
        assert_eq!(nearest("atan", names), Some("ATan"));
        assert_eq!(nearest("qqqqqqq", names), None);
        assert_eq!(did_you_mean("LIFNod", names), " (did you mean `LIFNode`?)");
        assert_eq!(did_you_mean("zz", names), "");
    }
}
