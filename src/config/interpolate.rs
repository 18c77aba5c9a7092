//! `${NAME}` in string values: replaced by the environment variable's value.

use toml::Spanned;
use toml::de::DeValue;

use super::load::Cx;

/// Replaces `${NAME}` in every string value; `$${` is a literal `${`.
pub(super) fn interpolate(
    value: &mut Spanned<DeValue<'_>>,
    cx: &mut Cx<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains("${") => match expand(s, lookup) {
            Ok(expanded) => *s = expanded.into(),
            Err(msg) => cx.error(span, msg),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(item, cx, lookup);
            }
        }
        DeValue::Table(table) => {
            for (_, v) in table.iter_mut() {
                interpolate(v, cx, lookup);
            }
        }
        _ => {}
    }
}

pub(super) fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in \"{s}\""))?;
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid environment variable name `{name}` in \"{s}\""
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
