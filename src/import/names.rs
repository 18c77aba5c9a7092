//! Server names → backend names that `gateway.toml` accepts (letters, digits,
//! `_`, `-`; no separator inside; short enough to leave room for tool names)
//! and that no other backend uses.

use std::collections::BTreeSet;

use crate::config::MAX_EXPOSED_NAME;

/// Longest name given to an imported backend: with the separator it leaves
/// at least 20 characters for each tool name under the 64-character limit.
const MAX_NAME: usize = 40;

/// The names and prefixes already used, and the separator they join with.
pub(super) struct Names {
    taken: BTreeSet<String>,
    separator: String,
}

/// Why a name was changed, for the report.
pub(super) enum Renamed {
    Kept,
    /// Not a valid backend name as given.
    Invalid,
    /// Another backend has it; `by` says which.
    Taken {
        by: String,
    },
}

impl Names {
    pub(super) fn new(separator: &str) -> Self {
        Self {
            taken: BTreeSet::new(),
            separator: separator.to_string(),
        }
    }

    /// Marks a name (or prefix) as used, e.g. by the `--write` target.
    pub(super) fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// A free, valid name for `wanted`. `owners` says which file each name
    /// came from, for the collision message.
    pub(super) fn assign(
        &mut self,
        wanted: &str,
        owner_of: &dyn Fn(&str) -> String,
    ) -> (String, Renamed) {
        let clean = self.sanitize(wanted);
        let mut why = if clean == wanted {
            Renamed::Kept
        } else {
            Renamed::Invalid
        };
        let mut name = clean.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            if matches!(why, Renamed::Kept | Renamed::Invalid) && n == 2 {
                why = Renamed::Taken {
                    by: owner_of(&clean),
                };
            }
            name = format!("{clean}{}{n}", self.joiner());
            n += 1;
        }
        self.taken.insert(name.clone());
        (name, why)
    }

    /// The character that replaces invalid ones: `-`, unless the separator
    /// itself holds a `-`.
    fn joiner(&self) -> char {
        if self.separator.contains('-') {
            '_'
        } else {
            '-'
        }
    }

    fn sanitize(&self, wanted: &str) -> String {
        let j = self.joiner();
        let mut out = String::new();
        for c in wanted.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                j
            };
            // No runs of the replacement: `my  server` → `my-server`.
            if !(c == j && out.ends_with(j)) {
                out.push(c);
            }
        }
        let mut out = out.trim_matches(j).to_string();
        // A prefix must not contain the separator (`my__fs` with `__`).
        while !self.separator.is_empty() && out.contains(&self.separator) {
            out = out.replace(&self.separator, &j.to_string());
        }
        let limit = MAX_NAME.min(MAX_EXPOSED_NAME.saturating_sub(self.separator.len() + 20));
        if out.chars().count() > limit {
            out = out.chars().take(limit).collect();
            out = out.trim_end_matches(j).to_string();
        }
        if out.is_empty() { "server".into() } else { out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_cleaned_and_collisions_get_a_suffix() {
        let mut names = Names::new("__");
        names.reserve("github");
        let owner = |_: &str| "gateway.toml".to_string();
        assert_eq!(names.assign("My Server!", &owner).0, "My-Server");
        assert_eq!(names.assign("my__fs", &owner).0, "my-fs");
        let (n, why) = names.assign("github", &owner);
        assert_eq!(n, "github-2");
        assert!(matches!(why, Renamed::Taken { by } if by == "gateway.toml"));
        assert_eq!(names.assign("github", &owner).0, "github-3");
        assert_eq!(names.assign(&"x".repeat(90), &owner).0.len(), 40);
        assert_eq!(names.assign("@@", &owner).0, "server");
    }
}
