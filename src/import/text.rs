//! String values: the clients' `${...}` references, and how a value is
//! written into `gateway.toml` (where `${NAME}` is read from the environment
//! and `$${` is a literal `${`).

use std::path::Path;

/// A string value as text and environment references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Text(pub(super) Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Literal(String),
    Var(String),
}

impl Text {
    pub(super) fn literal(s: impl Into<String>) -> Self {
        Self(vec![Segment::Literal(s.into())])
    }

    /// The value as `gateway.toml` must hold it: references as `${NAME}`,
    /// and a literal `${` escaped as `$${` so the loader does not expand it.
    pub(super) fn to_config(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Segment::Literal(l) => out.push_str(&l.replace("${", "$${")),
                Segment::Var(v) => {
                    out.push_str("${");
                    out.push_str(v);
                    out.push('}');
                }
            }
        }
        out
    }

    /// The literal parts only (references left out): what could hold a secret.
    pub(super) fn literal_text(&self) -> String {
        self.0
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Var(_) => None,
            })
            .collect()
    }

    pub(super) fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Literal(_) => None,
        })
    }

    fn push_literal(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(Segment::Literal(l)) = self.0.last_mut() {
            l.push_str(s);
        } else {
            self.0.push(Segment::Literal(s.to_string()));
        }
    }
}

/// What the client's file says about its surroundings, for references such
/// as `${workspaceFolder}`.
pub(super) struct Scope<'a> {
    /// The folder a project-level file belongs to (`.vscode/..`, `.cursor/..`).
    pub(super) workspace: &'a Path,
    /// VS Code's `inputs`.
    pub(super) inputs: &'a [Input],
}

/// A VS Code input: a value VS Code prompts for, which becomes a variable.
pub(super) struct Input {
    pub(super) id: String,
    pub(super) var: String,
    pub(super) description: String,
}

/// Reads the client's references in `raw`. Each one that is not a plain
/// environment variable is explained in `notes` (for the report).
pub(super) fn parse(raw: &str, scope: &Scope<'_>, notes: &mut Vec<String>) -> Text {
    let mut text = Text::default();
    let mut rest = raw;
    while let Some(i) = rest.find("${") {
        text.push_literal(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            text.push_literal(&rest[i..]);
            rest = "";
            break;
        };
        reference(&after[..end], scope, notes, &mut text);
        rest = &after[end + 1..];
    }
    text.push_literal(rest);
    text
}

fn reference(inner: &str, scope: &Scope<'_>, notes: &mut Vec<String>, text: &mut Text) {
    // The editors' own variables first: `workspaceFolder` is also a valid
    // environment variable name, but no environment holds it.
    match inner {
        "workspaceFolder" | "workspaceRoot" => {
            return text.push_literal(&scope.workspace.display().to_string());
        }
        "workspaceFolderBasename" => {
            let base = scope.workspace.file_name().map(|n| n.to_string_lossy());
            return text.push_literal(&base.unwrap_or_default());
        }
        "userHome" => return text.0.push(Segment::Var("HOME".into())),
        "pathSeparator" | "/" => return text.push_literal("/"),
        _ => {}
    }
    if let Some(name) = inner.strip_prefix("env:")
        && valid_var(name)
    {
        text.0.push(Segment::Var(name.into()));
    } else if let Some(id) = inner.strip_prefix("input:") {
        let var = match scope.inputs.iter().find(|i| i.id == id) {
            Some(input) => input.var.clone(),
            None => {
                let var = var_name(id);
                notes.push(format!(
                    "`${{input:{id}}}` names no entry of `inputs`; it reads `${{{var}}}`"
                ));
                var
            }
        };
        text.0.push(Segment::Var(var));
    } else if valid_var(inner) {
        text.0.push(Segment::Var(inner.into()));
    } else if let Some((name, default)) = inner.split_once(":-")
        && valid_var(name)
    {
        notes.push(format!(
            "`${{{inner}}}`: gateway.toml has no defaults; set {name} (the client's default was \"{default}\")"
        ));
        text.0.push(Segment::Var(name.into()));
    } else {
        notes.push(format!(
            "`${{{inner}}}` is not a reference the gateway knows; kept as literal text"
        ));
        text.push_literal(&format!("${{{inner}}}"));
    }
}

/// An environment variable name the gateway's loader accepts.
pub(super) fn valid_var(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `api-key` → `API_KEY`: a name made into an environment variable name.
pub(super) fn var_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    match out.chars().next() {
        None => "SECRET".into(),
        Some(c) if c.is_ascii_digit() => format!("V_{out}"),
        Some(_) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope<'static> {
        Scope {
            workspace: Path::new("/home/me/app"),
            inputs: &[],
        }
    }

    #[test]
    fn references_become_gateway_references() {
        let mut notes = Vec::new();
        let t = parse(
            "Bearer ${env:TOKEN} ${HOME} ${workspaceFolder}/x ${X:-1} ${foo.bar}",
            &scope(),
            &mut notes,
        );
        assert_eq!(
            t.to_config(),
            "Bearer ${TOKEN} ${HOME} /home/me/app/x ${X} $${foo.bar}"
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(t.literal_text(), "Bearer   /home/me/app/x  ${foo.bar}");
    }

    #[test]
    fn var_names() {
        assert_eq!(var_name("api-key"), "API_KEY");
        assert_eq!(var_name("--Api.Key"), "API_KEY");
        assert_eq!(var_name("1pass"), "V_1PASS");
    }
}
