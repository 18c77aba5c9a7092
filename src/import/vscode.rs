//! VS Code: `.vscode/mcp.json` (`servers` and `inputs`), or the `mcp` object
//! of a `settings.json`. Entries carry `type` (`stdio`, `http`, `sse`); an
//! input such as `${input:github-token}` is a value VS Code prompts for, and
//! becomes an environment variable (`GITHUB_TOKEN`) the user exports.

use serde_json::{Map, Value};

use super::json::{JsonPath, type_name};
use super::mcp_servers::Entry;
use super::text::{Input, var_name};

/// The object holding `servers` (and `inputs`), with its path: the root, or
/// `$.mcp` in a settings file.
pub(super) fn container(root: &Map<String, Value>) -> Option<(&Map<String, Value>, JsonPath)> {
    if root.get("servers").is_some_and(Value::is_object) {
        return Some((root, JsonPath::root()));
    }
    match root.get("mcp") {
        Some(Value::Object(mcp)) if mcp.get("servers").is_some_and(Value::is_object) => {
            Some((mcp, JsonPath::root().key("mcp")))
        }
        _ => None,
    }
}

/// The entries of `servers`.
pub(super) fn entries<'a>(obj: &'a Map<String, Value>, at: &JsonPath) -> Vec<Entry<'a>> {
    let at = at.key("servers");
    obj.get("servers")
        .and_then(Value::as_object)
        .map(|servers| {
            servers
                .iter()
                .map(|(name, value)| Entry {
                    name,
                    value,
                    path: at.key(name),
                    project: None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of `inputs`; problems as (path, message).
pub(super) fn inputs(
    obj: &Map<String, Value>,
    at: &JsonPath,
) -> (Vec<Input>, Vec<(JsonPath, String)>) {
    let at = at.key("inputs");
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let items = match obj.get("inputs") {
        None => return (out, problems),
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.push((
                at,
                format!("expected an array, found {}; ignored", type_name(other)),
            ));
            return (out, problems);
        }
    };
    for (i, item) in items.iter().enumerate() {
        match item.get("id").and_then(Value::as_str) {
            Some(id) => {
                let desc = item
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(Input {
                    id: id.to_string(),
                    var: var_name(id),
                    description: desc.to_string(),
                });
            }
            None => problems.push((at.index(i), "an input without `id`; ignored".into())),
        }
    }
    (out, problems)
}
