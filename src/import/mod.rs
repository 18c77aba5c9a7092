//! `manifold import`: the MCP server configs clients already write (Claude
//! Desktop, Claude Code, Cursor, VS Code) → `[backends.NAME]` tables of
//! `gateway.toml`, printed or merged into an existing file.
//!
//! Reading (`json`, `mcp_servers`, `vscode`, `entry`) turns each
//! server entry into a `Server`; `secrets` replaces credentials with
//! `${VAR}` references on the way; `names` gives each a free, valid name;
//! `emit` writes the tables with `toml_edit`, keeping an existing file's
//! text and comments. Problems that do not stop the import are [`Report`]s
//! (stderr); unreadable or invalid files are [`ImportError`]s (exit 1).
//! Uses only `config` from the crate.

mod emit;
mod entry;
mod json;
mod mcp_servers;
mod names;
mod secrets;
mod text;
mod vscode;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use json::JsonPath;
use secrets::{Needed, Vars};
use text::{Scope, Text};

/// What `manifold import` was asked to do.
pub struct Options {
    pub files: Vec<PathBuf>,
    /// Merge into this gateway.toml (created if missing) instead of printing.
    pub write: Option<PathBuf>,
    pub prefix_from: PrefixFrom,
}

/// Where each imported backend's prefix comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixFrom {
    /// The backend's name (the default: no `prefix` key is written).
    Name,
    /// None: `prefix = ""`, the server's names are exposed bare.
    None,
}

impl FromStr for PrefixFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "name" => Ok(Self::Name),
            "none" => Ok(Self::None),
            other => Err(format!("`{other}`: expected `name` or `none`")),
        }
    }
}

/// A file that cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: invalid JSON: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("{file}:{line}:{column}: invalid TOML: {message}")]
    Target {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
}

/// A problem that did not stop the import: a field not supported, a renamed
/// backend, a skipped entry.
#[derive(Clone, Debug)]
pub struct Report {
    pub file: String,
    path: Option<JsonPath>,
    pub message: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {p}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// One imported server, before it has its backend name.
pub(crate) struct Server {
    /// The name the client gave it.
    name: String,
    /// Which client's file it came from ("Cursor").
    client: &'static str,
    file: String,
    path: JsonPath,
    transport: Transport,
    enabled: bool,
    timeout: Option<Duration>,
    /// The environment variables it reads, and why.
    needed: Vec<Needed>,
}

enum Transport {
    Stdio {
        command: Text,
        args: Vec<Text>,
        env: Vec<(String, Text)>,
        cwd: Option<Text>,
    },
    Http {
        url: Text,
        headers: Vec<(String, Text)>,
    },
    Sse {
        url: Text,
        headers: Vec<(String, Text)>,
    },
}

impl Server {
    fn texts(&self) -> Box<dyn Iterator<Item = &Text> + '_> {
        match &self.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => Box::new(
                std::iter::once(command)
                    .chain(args)
                    .chain(env.iter().map(|(_, t)| t))
                    .chain(cwd),
            ),
            Transport::Http { url, headers } | Transport::Sse { url, headers } => {
                Box::new(std::iter::once(url).chain(headers.iter().map(|(_, t)| t)))
            }
        }
    }
}

/// The result: the TOML text (the whole merged file with `--write`) and
/// what to tell the user.
pub struct Outcome {
    pub toml: String,
    pub reports: Vec<Report>,
    /// One line per imported backend: `NAME  (from FILE)`.
    pub imported: Vec<String>,
}

/// Reads every file and builds the TOML; nothing is written. Every file's
/// errors are returned together.
pub fn run(opts: &Options) -> Result<Outcome, Vec<ImportError>> {
    let target = match &opts.write {
        Some(path) => emit::Target::read(path).map_err(|e| vec![e])?,
        None => emit::Target::empty(),
    };
    let mut reports = Vec::new();
    let mut vars = Vars::default();
    let mut servers = Vec::new();
    let mut errors = Vec::new();
    for file in &opts.files {
        match read_file(file, &mut reports, &mut vars) {
            Ok(mut s) => servers.append(&mut s),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let named = emit::name_all(servers, &target, &mut reports);
    let imported = named
        .iter()
        .map(|(n, s)| format!("{n}  (from {} {})", s.file, s.path))
        .collect();
    let toml = emit::render(target, &named, opts.prefix_from, &opts.files);
    Ok(Outcome {
        toml,
        reports,
        imported,
    })
}

/// Runs `manifold import` and returns its exit code: 0 when imported (with
/// or without warnings), 1 when a file could not be read or understood.
pub fn main(opts: &Options) -> u8 {
    let outcome = match run(opts) {
        Ok(o) => o,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return 1;
        }
    };
    for r in &outcome.reports {
        eprintln!("{r}");
    }
    match &opts.write {
        None => print!("{}", outcome.toml),
        Some(path) => {
            if let Err(e) = emit::write_atomically(path, &outcome.toml) {
                eprintln!("{e}");
                return 1;
            }
            eprintln!(
                "{}: added {} backend(s)",
                path.display(),
                outcome.imported.len()
            );
        }
    }
    for line in &outcome.imported {
        eprintln!("imported {line}");
    }
    0
}

/// One client file → its servers (reports for what was skipped or changed).
fn read_file(
    path: &Path,
    reports: &mut Vec<Report>,
    vars: &mut Vars,
) -> Result<Vec<Server>, ImportError> {
    let file = path.display().to_string();
    let raw = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        file: file.clone(),
        source,
    })?;
    let root = json::parse_jsonc(&raw).map_err(|e| ImportError::Json {
        file: file.clone(),
        line: e.line(),
        column: e.column(),
        message: json_message(&e),
    })?;
    let Value::Object(root) = root else {
        return Err(ImportError::Format {
            file,
            message: format!("expected a JSON object, found {}", json::type_name(&root)),
        });
    };
    let workspace = workspace_of(path);
    let client = client_of(path, &root);
    let vscode = vscode::container(&root)
        .filter(|_| client.starts_with("VS Code") || !mcp_servers::matches(&root));
    let (entries, inputs, problems, needs_type) = if let Some((obj, at)) = vscode {
        let (inputs, problems) = vscode::inputs(obj, &at);
        (vscode::entries(obj, &at), inputs, problems, true)
    } else if mcp_servers::matches(&root) {
        let (entries, problems) = mcp_servers::entries(&root);
        (entries, Vec::new(), problems, false)
    } else {
        return Err(ImportError::Format {
            file,
            message: "no `mcpServers` (Claude Desktop, Claude Code, Cursor) or `servers` (VS Code) object: not an MCP client config".into(),
        });
    };
    for (at, message) in problems {
        reports.push(Report {
            file: file.clone(),
            path: Some(at),
            message,
        });
    }
    if entries.is_empty() {
        reports.push(Report {
            file: file.clone(),
            path: None,
            message: "no MCP servers in this file".into(),
        });
    }
    let src = entry::Source {
        file: &file,
        client,
        scope: Scope {
            workspace: &workspace,
            inputs: &inputs,
        },
        needs_type,
    };
    let mut sink = entry::Sink { reports, vars };
    // Clients start a project's servers in the project folder, so relative
    // arguments (`scripts/server.js`) keep working with that `cwd`.
    let project_level = matches!(client, "VS Code" | "Cursor" | "Claude Code project");
    Ok(entries
        .iter()
        .filter_map(|e| {
            let project = e
                .project
                .map(PathBuf::from)
                .or_else(|| project_level.then(|| workspace.clone()));
            entry::convert(e.name, e.value, e.path.clone(), project, &src, &mut sink)
        })
        .collect())
}

/// Which client wrote the file, from its name and content; a file holding
/// both `servers` and `mcpServers` is VS Code's only inside `.vscode/`.
fn client_of(path: &Path, root: &serde_json::Map<String, Value>) -> &'static str {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let dir = path
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match (dir, name) {
        (".vscode", _) => "VS Code",
        (".cursor", _) => "Cursor",
        (_, "claude_desktop_config.json") => "Claude Desktop",
        (_, ".claude.json") => "Claude Code",
        (_, ".mcp.json") => "Claude Code project",
        (_, "settings.json") if root.contains_key("mcp") => "VS Code settings",
        _ if root.contains_key("projects") => "Claude Code",
        _ if vscode::container(root).is_some() && !mcp_servers::matches(root) => "VS Code",
        _ => "mcpServers JSON",
    }
}

/// serde_json's message without its own " at line L column C" (the error
/// already says where).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The project folder a file belongs to: the parent of `.vscode/` or
/// `.cursor/`, else the file's own folder. Absolute, so `${workspaceFolder}`
/// and relative `cwd`s work wherever the gateway runs.
fn workspace_of(path: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    match dir.file_name().and_then(|n| n.to_str()) {
        Some(".vscode" | ".cursor") => dir.parent().map(Path::to_path_buf).unwrap_or(dir),
        _ => dir,
    }
}
