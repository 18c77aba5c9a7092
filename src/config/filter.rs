//! Name filters: the `include` / `exclude` globs of `tools`, `prompts` and token allow-lists.

use std::fmt;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// `include` / `exclude` glob patterns over a backend's own (unprefixed) names.
///
/// A name is kept when it matches some `include` pattern (or `include` is
/// empty) and matches no `exclude` pattern.
#[derive(Clone, Default)]
pub struct NameFilter {
    include: Vec<String>,
    exclude: Vec<String>,
    include_set: Option<GlobSet>,
    exclude_set: Option<GlobSet>,
}

impl NameFilter {
    /// Builds the filter; the error names the first invalid pattern.
    pub fn new(
        include: Vec<String>,
        exclude: Vec<String>,
    ) -> Result<Self, (String, globset::Error)> {
        fn build(patterns: &[String]) -> Result<Option<GlobSet>, (String, globset::Error)> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(Glob::new(p).map_err(|e| (p.clone(), e))?);
            }
            b.build().map(Some).map_err(|e| (patterns.join(", "), e))
        }
        Ok(Self {
            include_set: build(&include)?,
            exclude_set: build(&exclude)?,
            include,
            exclude,
        })
    }

    pub fn allows(&self, name: &str) -> bool {
        let included = self.include_set.as_ref().is_none_or(|s| s.is_match(name));
        included && !self.exclude_set.as_ref().is_some_and(|s| s.is_match(name))
    }

    pub fn include(&self) -> &[String] {
        &self.include
    }
    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }
}

impl PartialEq for NameFilter {
    fn eq(&self, other: &Self) -> bool {
        self.include == other.include && self.exclude == other.exclude
    }
}

impl fmt::Debug for NameFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameFilter")
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_include_then_exclude() {
        let f =
            NameFilter::new(vec!["get*".into(), "echo".into()], vec!["getSecret".into()]).unwrap();
        assert!(f.allows("echo"));
        assert!(f.allows("getTime"));
        assert!(!f.allows("getSecret"));
        assert!(!f.allows("add"));
        assert!(NameFilter::default().allows("anything"));
    }
}
