//! The `mcpServers` family: Claude Desktop's `claude_desktop_config.json`,
//! Claude Code's `~/.claude.json` (top level and per project) and `.mcp.json`,
//! Cursor's `.cursor/mcp.json`, and any plain `{"mcpServers": {...}}`.
//!
//! Each entry is `{"command", "args", "env"}` (stdio) or `{"url", "headers"}`,
//! with an optional `type` (Claude Code: `stdio`, `http`, `sse`).

use serde_json::{Map, Value};

use super::json::{JsonPath, type_name};

/// One server entry found in a file: its name, its JSON, and where it is.
pub(super) struct Entry<'a> {
    pub(super) name: &'a str,
    pub(super) value: &'a Value,
    pub(super) path: JsonPath,
    /// The project folder the client runs it in, when the file says
    /// (`projects` of `~/.claude.json`).
    pub(super) project: Option<&'a str>,
}

/// The entries of `mcpServers` at the top level, and with `projects` (Claude
/// Code's user file) those of every project. A problem with the shape is
/// returned as (path, message) for the report.
pub(super) fn entries<'a>(
    root: &'a Map<String, Value>,
) -> (Vec<Entry<'a>>, Vec<(JsonPath, String)>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    servers_at(root, &JsonPath::root(), &mut out, &mut problems);
    if let Some(projects) = root.get("projects") {
        let at = JsonPath::root().key("projects");
        match projects {
            Value::Object(projects) => {
                for (dir, project) in projects {
                    if let Value::Object(p) = project {
                        let first = out.len();
                        servers_at(p, &at.key(dir), &mut out, &mut problems);
                        for e in &mut out[first..] {
                            e.project = Some(dir.as_str());
                        }
                    }
                }
            }
            other => problems.push((
                at,
                format!("expected an object, found {}; ignored", type_name(other)),
            )),
        }
    }
    (out, problems)
}

fn servers_at<'a>(
    obj: &'a Map<String, Value>,
    at: &JsonPath,
    out: &mut Vec<Entry<'a>>,
    problems: &mut Vec<(JsonPath, String)>,
) {
    let at = at.key("mcpServers");
    match obj.get("mcpServers") {
        None => {}
        Some(Value::Object(servers)) => out.extend(servers.iter().map(|(name, value)| Entry {
            name,
            value,
            path: at.key(name),
            project: None,
        })),
        Some(other) => problems.push((
            at,
            format!("expected an object, found {}; ignored", type_name(other)),
        )),
    }
}

/// Whether a root object looks like this family.
pub(super) fn matches(root: &Map<String, Value>) -> bool {
    root.contains_key("mcpServers")
        || root
            .get("projects")
            .and_then(Value::as_object)
            .is_some_and(|p| p.values().any(|v| v.get("mcpServers").is_some()))
}
