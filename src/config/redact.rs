//! Keeping secrets out of what the gateway prints: `manifold check`, log
//! lines, `/readyz` and `/status`.
//!
//! The loader records every value it took from the environment (`${VAR}`)
//! and every credential and query value of a backend URL; [`redact`] replaces
//! each occurrence of one of them in a text with `***`. That catches the
//! places where a value reaches text indirectly too: an HTTP client's error
//! that quotes the URL, a "failed to start" message that quotes an argument.
//!
//! The list is process-wide on purpose: log output is process-wide (one
//! tracing subscriber writes every line), and a reload loads its file through
//! the same loader, so a new secret is known before anything can print it.
//! It only grows; a secret a reload removed stays hidden.

use std::borrow::Cow;
use std::sync::RwLock;

/// Values shorter than this are not searched for in free text: replacing
/// every `1` or `on` in every log line would garble the logs, and a value that
/// short protects nothing. [`redact_url`] hides URL parts whatever their length.
pub const MIN_SECRET_LEN: usize = 4;

const MASK: &str = "***";

/// Longest first, so a secret that contains another is replaced whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds values that must never be printed.
pub fn remember(values: impl IntoIterator<Item = String>) {
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let before = secrets.len();
    for v in values {
        if v.chars().count() >= MIN_SECRET_LEN && !secrets.contains(&v) {
            secrets.push(v);
        }
    }
    if secrets.len() != before {
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every remembered secret replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

/// Redacts every string in a JSON document (keys included).
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            let redacted: serde_json::Map<String, Value> = std::mem::take(map)
                .into_iter()
                .map(|(k, mut v)| {
                    redact_json(&mut v);
                    (redact(&k).into_owned(), v)
                })
                .collect();
            *map = redacted;
        }
        _ => {}
    }
}

/// Whether any secret is known (lets hot paths skip the search).
pub fn any() -> bool {
    !SECRETS.read().unwrap_or_else(|e| e.into_inner()).is_empty()
}

/// A URL fit to print: user name and password, every query value and the
/// fragment replaced by `***`; query keys are kept, as they say what was
/// configured. Anything that does not parse is hidden whole.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return MASK.to_string();
    };
    // Both setters fail only for URLs that cannot carry credentials.
    if !parsed.username().is_empty() {
        let _ = parsed.set_username(MASK);
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if let Some(query) = parsed.query() {
        let shown: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={MASK}"),
                None if pair.is_empty() => String::new(),
                None => MASK.to_string(),
            })
            .collect();
        parsed.set_query(Some(&shown.join("&")));
    }
    if parsed.fragment().is_some() {
        parsed.set_fragment(Some(MASK));
    }
    // `set_username` percent-encodes `*`; show the mask as written.
    parsed.to_string().replace("%2A%2A%2A", MASK)
}

/// The parts of a URL that [`redact_url`] hides, as values to [`remember`],
/// so that an error quoting the URL is redacted too.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !parsed.username().is_empty() {
        out.push(parsed.username().to_string());
    }
    out.extend(parsed.password().map(str::to_string));
    if let Some(query) = parsed.query() {
        for pair in query.split('&') {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            out.push(value.to_string());
        }
    }
    out.extend(parsed.fragment().map(str::to_string));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:9/mcp?key=s3cret&x#frag"),
            "http://***:***@127.0.0.1:9/mcp?key=***&***#***"
        );
        assert_eq!(redact_url("https://h/mcp"), "https://h/mcp");
        assert_eq!(redact_url("not a url"), "***");
        assert_eq!(
            url_secrets("http://u:pw@h/?a=1&bbbb"),
            vec!["u", "pw", "1", "bbbb"]
        );
    }

    #[test]
    fn remembered_values_are_replaced_longest_first() {
        remember(["redact-test-abcd".to_string(), "redact-test-abcdef".into()]);
        remember(["ab".to_string()]); // too short to search for
        assert_eq!(
            redact("x redact-test-abcdef y redact-test-abcd ab"),
            "x *** y *** ab"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }
}
