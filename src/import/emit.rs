//! Writing the backends as `gateway.toml` tables with `toml_edit`, which
//! keeps an existing file's text, order and comments byte for byte and only
//! appends the new tables.

use std::io::Write;
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

use super::names::{Names, Renamed};
use super::{ImportError, PrefixFrom, Report, Server, Transport};

/// The file `--write` merges into (or an empty document when printing).
pub(super) struct Target {
    doc: DocumentMut,
    label: Option<String>,
}

impl Target {
    pub(super) fn empty() -> Self {
        Self {
            doc: DocumentMut::new(),
            label: None,
        }
    }

    /// Reads the target; a missing file is an empty one (it will be created).
    pub(super) fn read(path: &Path) -> Result<Self, ImportError> {
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ImportError::Read { file, source }),
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let before = &text[..offset.min(text.len())];
            ImportError::Target {
                file: file.clone(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().unwrap_or("").chars().count() + 1,
                message: e.message().trim().to_string(),
            }
        })?;
        if doc.get("backends").is_some_and(|b| !b.is_table_like()) {
            return Err(ImportError::Format {
                file,
                message: "`backends` is not a table".into(),
            });
        }
        Ok(Self {
            doc,
            label: Some(file),
        })
    }

    fn separator(&self) -> &str {
        self.doc
            .get("server")
            .and_then(|s| s.get("separator"))
            .and_then(Item::as_str)
            .unwrap_or("__")
    }

    /// Names and prefixes the target's backends already use.
    fn used(&self) -> Vec<String> {
        let Some(backends) = self.doc.get("backends").and_then(Item::as_table_like) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, b) in backends.iter() {
            out.push(name.to_string());
            if let Some(p) = b.get("prefix").and_then(Item::as_str) {
                out.push(p.to_string());
            }
        }
        out
    }
}

/// Gives every server a free, valid backend name, in order, and reports
/// each one that had to change.
pub(super) fn name_all(
    servers: Vec<Server>,
    target: &Target,
    reports: &mut Vec<Report>,
) -> Vec<(String, Server)> {
    let mut names = Names::new(target.separator());
    let mut owners: Vec<(String, String)> = Vec::new();
    let target_label = target.label.clone().unwrap_or_default();
    for used in target.used() {
        names.reserve(&used);
        owners.push((used, format!("a backend of {target_label}")));
    }
    let mut out = Vec::new();
    for s in servers {
        let owner_of = |n: &str| {
            owners
                .iter()
                .find(|(name, _)| name == n)
                .map_or_else(|| "another import".to_string(), |(_, o)| o.clone())
        };
        let (name, why) = names.assign(&s.name, &owner_of);
        let message = match why {
            Renamed::Kept => None,
            Renamed::Invalid => Some(format!(
                "\"{}\" is not a valid backend name (letters, digits, `_`, `-`; no separator; at most 40 characters); imported as `{name}`",
                s.name
            )),
            Renamed::Taken { by } => Some(format!(
                "name `{}` is already used by {by}; imported as `{name}`",
                s.name
            )),
        };
        if let Some(message) = message {
            reports.push(Report {
                file: s.file.clone(),
                path: Some(s.path.clone()),
                message,
            });
        }
        owners.push((name.clone(), format!("{} {}", s.file, s.path)));
        out.push((name, s));
    }
    out
}

/// The document with the new tables appended after everything it holds.
pub(super) fn render(
    target: Target,
    servers: &[(String, Server)],
    prefix_from: PrefixFrom,
    files: &[PathBuf],
) -> String {
    let printing = target.label.is_none();
    let mut doc = target.doc;
    let mut position = last_position(&doc);
    if doc.get("backends").is_none() {
        let mut backends = Table::new();
        backends.set_implicit(true);
        doc.insert("backends", Item::Table(backends));
    }
    if let Some(backends) = doc.get_mut("backends").and_then(Item::as_table_like_mut) {
        for (name, server) in servers {
            position += 1;
            let mut table = table(server, prefix_from);
            table.set_position(Some(position));
            table.decor_mut().set_prefix(comment(server));
            backends.insert(name, Item::Table(table));
        }
    }
    let body = doc.to_string();
    if !printing {
        return body;
    }
    let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!(
        "# Backends imported by `manifold import` from {}.\n# Validate with `manifold check` once the variables named below are exported.\n{body}",
        list.join(", ")
    )
}

/// The highest table position in the document, so new tables go last.
fn last_position(doc: &DocumentMut) -> isize {
    fn walk(t: &Table, max: &mut isize) {
        if let Some(p) = t.position() {
            *max = (*max).max(p);
        }
        for (_, item) in t.iter() {
            if let Some(sub) = item.as_table() {
                walk(sub, max);
            }
        }
    }
    let mut max = 0;
    walk(doc.as_table(), &mut max);
    max
}

/// The comment above a table: where it came from and what to export.
fn comment(s: &Server) -> String {
    let mut out = format!("\n# From {} ({}): {}\n", s.client, s.file, s.path);
    let width = s.needed.iter().map(|n| n.var.len()).max().unwrap_or(0);
    for n in &s.needed {
        out.push_str(&format!("# export {:<width$}  # {}\n", n.var, n.why));
    }
    out
}

fn table(s: &Server, prefix_from: PrefixFrom) -> Table {
    let mut t = Table::new();
    let strings = |items: &[super::Text]| {
        let mut a = Array::new();
        for i in items {
            a.push(i.to_config());
        }
        a
    };
    let pairs = |items: &[(String, super::Text)]| {
        let mut it = InlineTable::new();
        for (k, v) in items {
            it.insert(k, v.to_config().into());
        }
        it
    };
    match &s.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            t.insert("transport", value("stdio"));
            t.insert("command", value(command.to_config()));
            if !args.is_empty() {
                t.insert("args", value(strings(args)));
            }
            if !env.is_empty() {
                t.insert("env", value(pairs(env)));
            }
            if let Some(cwd) = cwd {
                t.insert("cwd", value(cwd.to_config()));
            }
        }
        Transport::Http { url, headers } | Transport::Sse { url, headers } => {
            let kind = if matches!(s.transport, Transport::Sse { .. }) {
                "sse"
            } else {
                "http"
            };
            t.insert("transport", value(kind));
            t.insert("url", value(url.to_config()));
            if !headers.is_empty() {
                t.insert("headers", value(pairs(headers)));
            }
        }
    }
    if prefix_from == PrefixFrom::None {
        t.insert("prefix", value(""));
    }
    if !s.enabled {
        t.insert("enabled", value(false));
    }
    if let Some(d) = s.timeout {
        t.insert("timeout", value(humantime::format_duration(d).to_string()));
    }
    t
}

/// Writes through a temporary file in the same folder and a rename, so a
/// gateway watching the file never reads half of it.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<(), ImportError> {
    let err = |source| ImportError::Write {
        file: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.import-{}", std::process::id()));
    // The file may hold tokens: the new one keeps the old one's permissions.
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| match permissions {
            Some(p) => std::fs::set_permissions(&tmp, p),
            None => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
