//! `priority_filter`: which priorities a reader or subscriber wants.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::store::Priority;

/// A priority name means "this one and above", like a log level; a list of
/// names means exactly those; nothing means all.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Filter {
    #[default]
    All,
    AtLeast(Priority),
    Only(BTreeSet<Priority>),
}

impl Filter {
    pub fn parse(value: Option<&Value>) -> Result<Self, String> {
        match value {
            None | Some(Value::Null) => Ok(Filter::All),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Filter::All),
            Some(Value::String(s)) => s.parse().map(Filter::AtLeast),
            Some(Value::Array(items)) => {
                let mut set = BTreeSet::new();
                for item in items {
                    match item.as_str() {
                        Some(s) => set.insert(s.parse()?),
                        None => return Err(format!("unknown priority {item}")),
                    };
                }
                Ok(Filter::Only(set))
            }
            Some(other) => Err(format!(
                "must be a priority name or a list of them, got {other}"
            )),
        }
    }

    pub fn admits(&self, p: Priority) -> bool {
        match self {
            Filter::All => true,
            Filter::AtLeast(min) => p >= *min,
            Filter::Only(set) => set.contains(&p),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Filter::All => "all priorities".into(),
            Filter::AtLeast(p) => format!("{p} and above"),
            Filter::Only(set) => set.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_name_is_a_minimum_and_a_list_is_exact() {
        let high = Filter::parse(Some(&json!("HIGH"))).unwrap();
        assert!(high.admits(Priority::Critical) && !high.admits(Priority::Normal));
        let only = Filter::parse(Some(&json!(["low", "critical"]))).unwrap();
        assert!(only.admits(Priority::Low) && !only.admits(Priority::High));
        assert!(Filter::parse(Some(&json!("loud"))).is_err());
        assert_eq!(
            Filter::parse(Some(&json!("30"))).unwrap(),
            Filter::AtLeast(Priority::High)
        );
    }
}
