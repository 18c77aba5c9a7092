//! Secrets are never copied: a value that looks like one becomes a `${VAR}`
//! reference, and the variable is listed for the user to export.

use std::collections::BTreeMap;

use super::text::{Segment, Text, var_name};

/// The variables that hold secrets, with the value each stands for (kept in
/// memory only, to tell two different secrets that want the same name apart).
#[derive(Default)]
pub(super) struct Vars {
    taken: BTreeMap<String, String>,
}

impl Vars {
    /// The first candidate name free for `secret` (or already holding the
    /// same secret), else the last candidate with a number.
    fn claim(&mut self, candidates: &[String], secret: &str) -> String {
        for c in candidates {
            match self.taken.get(c) {
                Some(v) if v == secret => return c.clone(),
                Some(_) => {}
                None => {
                    self.taken.insert(c.clone(), secret.to_string());
                    return c.clone();
                }
            }
        }
        let base = candidates
            .last()
            .cloned()
            .unwrap_or_else(|| "SECRET".into());
        let mut n = 2;
        loop {
            let c = format!("{base}_{n}");
            if self.taken.get(&c).is_none_or(|v| v == secret) {
                self.taken.insert(c.clone(), secret.to_string());
                return c;
            }
            n += 1;
        }
    }
}

/// Where a value sits, which decides whether its key marks it secret and
/// what its variable is called.
pub(super) enum Place<'a> {
    Env(&'a str),
    Header(&'a str),
    /// An argument, with the flag it belongs to (`--api-key x`, `--api-key=x`).
    Arg(Option<&'a str>),
    Url,
}

/// A variable a backend needs, and why (for the comment above its table).
pub(super) struct Needed {
    pub(super) var: String,
    pub(super) why: String,
}

/// Replaces the secret parts of `text` with references. `server` is the
/// backend's name as a variable prefix (`GITHUB`).
pub(super) fn scrub(
    text: Text,
    place: &Place<'_>,
    server: &str,
    vars: &mut Vars,
    needed: &mut Vec<Needed>,
) -> Text {
    let literal = text.literal_text();
    let has_vars = text.vars().next().is_some();
    let named = match place {
        Place::Env(k) | Place::Header(k) => sensitive_name(k),
        Place::Arg(Some(flag)) => sensitive_name(flag),
        Place::Arg(None) | Place::Url => false,
    };
    if has_vars {
        // Already (partly) references: only a literal token left beside them
        // still needs hiding, and then the whole value becomes one variable.
        if !literal.split_whitespace().any(looks_like_token) {
            return text;
        }
    } else if literal.contains("://") {
        return scrub_url(&literal, server, vars, needed, named);
    } else if !(named && !harmless(&literal) || looks_like_token(&literal)) {
        return text;
    }
    let (scheme, secret) = split_scheme(&literal);
    let candidates = match place {
        Place::Env(k) => vec![var_name(k), format!("{server}_{}", var_name(k))],
        Place::Header(h) => {
            let h = h.to_ascii_lowercase();
            if h == "authorization" || h == "proxy-authorization" {
                vec![format!("{server}_TOKEN")]
            } else {
                let h = h.strip_prefix("x-").unwrap_or(&h);
                vec![format!("{server}_{}", var_name(h))]
            }
        }
        Place::Arg(Some(flag)) => vec![format!("{server}_{}", var_name(flag))],
        Place::Arg(None) | Place::Url => vec![format!("{server}_SECRET")],
    };
    let var = vars.claim(&candidates, secret);
    let why = match place {
        Place::Env(k) => format!("was the value of env {k}"),
        Place::Header(h) => format!("was in header {h}"),
        Place::Arg(Some(f)) => format!("was the argument of {f}"),
        Place::Arg(None) => "was an argument".into(),
        Place::Url => "was in the url".into(),
    };
    needed.push(Needed {
        var: var.clone(),
        why,
    });
    let mut out = Vec::new();
    if !scheme.is_empty() {
        out.push(Segment::Literal(scheme.to_string()));
    }
    out.push(Segment::Var(var));
    Text(out)
}

/// `Bearer abc` → (`Bearer `, `abc`): the scheme stays readable.
fn split_scheme(v: &str) -> (&str, &str) {
    for scheme in ["Bearer ", "Basic ", "Token ", "token ", "bearer "] {
        if let Some(rest) = v.strip_prefix(scheme)
            && !rest.is_empty()
        {
            return (scheme, rest);
        }
    }
    ("", v)
}

/// A text being built: literal pieces, with secrets cut out as variables.
struct Scrubbed<'a> {
    out: Text,
    lit: String,
    server: &'a str,
    vars: &'a mut Vars,
    needed: &'a mut Vec<Needed>,
}

impl Scrubbed<'_> {
    /// Puts a reference to a new variable (`SERVER_VAR`) where `secret` was.
    fn hide(&mut self, var: &str, secret: &str, why: String) {
        self.out
            .0
            .push(Segment::Literal(std::mem::take(&mut self.lit)));
        let var = self.vars.claim(&[format!("{}_{var}", self.server)], secret);
        self.needed.push(Needed {
            var: var.clone(),
            why,
        });
        self.out.0.push(Segment::Var(var));
    }

    fn finish(mut self) -> Text {
        self.out.0.push(Segment::Literal(self.lit));
        self.out
            .0
            .retain(|s| !matches!(s, Segment::Literal(l) if l.is_empty()));
        self.out
    }
}

/// A URL: a password in its user info and secret-named query parameters
/// become references; the rest stays.
fn scrub_url(
    url: &str,
    server: &str,
    vars: &mut Vars,
    needed: &mut Vec<Needed>,
    named: bool,
) -> Text {
    let mut s = Scrubbed {
        out: Text::default(),
        lit: String::new(),
        server,
        vars,
        needed,
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    s.lit.push_str(scheme);
    s.lit.push_str("://");
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            scrub_userinfo(&mut s, userinfo, named);
            s.lit.push('@');
            s.lit.push_str(host);
        }
        None => s.lit.push_str(authority),
    }
    let (path, query) = tail
        .split_once('?')
        .map_or((tail, None), |(p, q)| (p, Some(q)));
    s.lit.push_str(path);
    if let Some(query) = query {
        let (query, fragment) = query
            .split_once('#')
            .map_or((query, None), |(q, f)| (q, Some(f)));
        s.lit.push('?');
        scrub_query(&mut s, query);
        if let Some(f) = fragment {
            s.lit.push('#');
            s.lit.push_str(f);
        }
    }
    s.finish()
}

/// `user:password` keeps the user; with `named`, a bare user info is hidden too.
fn scrub_userinfo(s: &mut Scrubbed<'_>, userinfo: &str, named: bool) {
    match userinfo.split_once(':') {
        Some((user, password)) if !password.is_empty() => {
            s.lit.push_str(user);
            s.lit.push(':');
            s.hide("PASSWORD", password, "was the password in a url".into());
        }
        _ if named => s.hide("USER", userinfo, "was the user info of a url".into()),
        _ => s.lit.push_str(userinfo),
    }
}

/// Query parameters with a secret-sounding name or a token-like value are hidden.
fn scrub_query(s: &mut Scrubbed<'_>, query: &str) {
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            s.lit.push('&');
        }
        match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && (sensitive_name(k) || looks_like_token(v)) => {
                s.lit.push_str(k);
                s.lit.push('=');
                let why = format!("was the url parameter {k}");
                s.hide(&var_name(k), v, why);
            }
            _ => s.lit.push_str(pair),
        }
    }
}

/// Whether a key (env name, header name, flag) says its value is a credential.
pub(super) fn sensitive_name(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    const PARTS: [&str; 8] = [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "AUTH",
        "CREDENTIAL",
        "COOKIE",
        "PRIVATE",
    ];
    if PARTS.iter().any(|p| upper.contains(p)) || upper.contains("APIKEY") {
        return true;
    }
    // Short markers only as whole words: `KEY` in `API_KEY` but not `KEYBOARD`.
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| matches!(w, "KEY" | "PAT" | "PASS"))
}

/// Values a secret-named key may hold in clear: nothing, flags, small
/// numbers (`MAX_TOKENS=4096`) and file paths (`GOOGLE_APPLICATION_CREDENTIALS`).
fn harmless(v: &str) -> bool {
    v.is_empty()
        || matches!(v, "true" | "false" | "0" | "1" | "yes" | "no")
        || (v.len() <= 6 && v.chars().all(|c| c.is_ascii_digit()))
        || v.starts_with('/')
        || v.starts_with("~/")
        || v.starts_with("./")
        || v.starts_with("../")
}

/// Whether a value on its own looks like a credential.
pub(super) fn looks_like_token(v: &str) -> bool {
    let v = v.trim();
    const PREFIXES: [&str; 16] = [
        "sk-",
        "sk_live_",
        "sk_test_",
        "rk_live_",
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "xapp-",
        "AKIA",
        "AIza",
    ];
    if PREFIXES
        .iter()
        .any(|p| v.starts_with(p) && v.len() >= p.len() + 8)
    {
        return true;
    }
    let (scheme, rest) = split_scheme(v);
    if !scheme.is_empty() && rest.len() >= 8 && !rest.contains(char::is_whitespace) {
        return true;
    }
    if v.starts_with("eyJ") && v.matches('.').count() == 2 && v.len() > 30 {
        return true;
    }
    high_entropy(v)
}

/// Long, mixed letters and digits, no spaces, not a path, URL or package:
/// random-looking enough to be a key.
fn high_entropy(v: &str) -> bool {
    if v.len() < 20
        || v.starts_with(['/', '.', '~', '@', '-'])
        || v.contains("://")
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+=/.:".contains(c))
        || !v.chars().any(|c| c.is_ascii_digit())
        || !v.chars().any(|c| c.is_ascii_alphabetic())
    {
        return false;
    }
    let mut counts = [0usize; 128];
    for b in v.bytes() {
        counts[usize::from(b & 0x7f)] += 1;
    }
    let n = v.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(value: &str, place: Place<'_>) -> (String, Vec<String>) {
        let mut vars = Vars::default();
        let mut needed = Vec::new();
        let t = scrub(
            Text::literal(value),
            &place,
            "GITHUB",
            &mut vars,
            &mut needed,
        );
        (t.to_config(), needed.into_iter().map(|n| n.var).collect())
    }

    #[test]
    fn secrets_by_name_and_by_look() {
        assert_eq!(run("abc", Place::Env("GITHUB_TOKEN")).0, "${GITHUB_TOKEN}");
        assert_eq!(run("4096", Place::Env("MAX_TOKENS")).0, "4096");
        assert_eq!(run("info", Place::Env("LOG_LEVEL")).0, "info");
        assert_eq!(run("ghp_abcdefghijklmnop1234", Place::Env("X")).0, "${X}");
        assert_eq!(
            run("Bearer abc.def", Place::Header("Authorization")).0,
            "Bearer ${GITHUB_TOKEN}"
        );
        assert_eq!(run("k1", Place::Header("X-API-Key")).0, "${GITHUB_API_KEY}");
        assert_eq!(
            run("postgresql://me:pw@localhost:5432/db", Place::Arg(None)).0,
            "postgresql://me:${GITHUB_PASSWORD}@localhost:5432/db"
        );
        assert_eq!(
            run("https://h.example/sse?api_key=abc&x=1", Place::Url).0,
            "https://h.example/sse?api_key=${GITHUB_API_KEY}&x=1"
        );
        assert_eq!(
            run("@modelcontextprotocol/server-filesystem", Place::Arg(None)).0,
            "@modelcontextprotocol/server-filesystem"
        );
        assert_eq!(
            run("Zx81mQ2vL0pR7tY4wK9sB3nC", Place::Arg(None)).0,
            "${GITHUB_SECRET}"
        );
    }

    #[test]
    fn two_secrets_never_share_a_variable() {
        let mut vars = Vars::default();
        assert_eq!(vars.claim(&["A".into(), "S_A".into()], "x"), "A");
        assert_eq!(vars.claim(&["A".into(), "S_A".into()], "x"), "A");
        assert_eq!(vars.claim(&["A".into(), "S_A".into()], "y"), "S_A");
        assert_eq!(vars.claim(&["A".into(), "S_A".into()], "z"), "S_A_2");
    }
}
