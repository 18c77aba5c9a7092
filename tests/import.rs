//! `manifold import` as a user runs it, on config files in the shapes Claude
//! Desktop, Claude Code, Cursor and VS Code write (tests/import/), and
//! `manifold check` on what it produces.

use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFOLD: &str = env!("CARGO_BIN_EXE_manifold");

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

const DESKTOP: &str = "claude-desktop/claude_desktop_config.json";
const CLAUDE_CODE: &str = "claude-code/.claude.json";
const PROJECT: &str = "claude-code/app/.mcp.json";
const CURSOR: &str = "cursor/proj/.cursor/mcp.json";
const VSCODE: &str = "vscode/proj/.vscode/mcp.json";
const PLAIN: &str = "plain/servers.json";
const ALL: [&str; 6] = [DESKTOP, CLAUDE_CODE, PROJECT, CURSOR, VSCODE, PLAIN];

/// The secret values written in clear in the sample files.
const SECRETS: [&str; 7] = [
    "ghp_FAKEdesktop0000000000000000000000000",
    "ghp_FAKEclaudecode000000000000000000000000",
    "BSA-fake-brave-key",
    "s3cretPw",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "fakeSearchKey123456789",
    "hunter2hunter2",
];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `manifold ARGS` in the samples folder (so reports name the files as given).
fn manifold(args: &[&str], envs: &[(String, String)]) -> Run {
    let out = Command::new(MANIFOLD)
        .current_dir(samples())
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run manifold");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn import(files: &[&str]) -> Run {
    let mut args = vec!["import"];
    args.extend_from_slice(files);
    manifold(&args, &[])
}

/// The variables the comments tell the user to export, each set to a dummy value.
fn exported(toml: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = toml
        .lines()
        .filter_map(|l| l.strip_prefix("# export "))
        .map(|l| {
            (
                l.split_whitespace().next().unwrap_or_default().to_string(),
                "x".to_string(),
            )
        })
        .collect();
    vars.sort();
    vars.dedup();
    vars
}

fn check(path: &Path, envs: &[(String, String)]) -> Run {
    manifold(&["check", path.to_str().unwrap()], envs)
}

#[test]
fn every_format_becomes_backends_that_check_accepts_once_the_variables_are_exported() {
    let run = import(&ALL);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let toml = &run.stdout;
    for table in [
        // Claude Desktop: stdio servers; a disabled one with a timeout in ms.
        "[backends.filesystem]\ntransport = \"stdio\"\ncommand = \"npx\"\nargs = [\"-y\", \"@modelcontextprotocol/server-filesystem\", \"/Users/me/Desktop\", \"/Users/me/Downloads\"]\n",
        "[backends.weather-local]\ntransport = \"stdio\"\ncommand = \"/usr/local/bin/weather-mcp\"\nargs = [\"--api-key=${WEATHER_LOCAL_API_KEY}\", \"--units\", \"metric\"]\nenabled = false\ntimeout = \"45s\"\n",
        // Claude Code: http with a bearer header, sse, and a project's server run in its folder.
        "[backends.github-2]\ntransport = \"http\"\nurl = \"https://api.githubcopilot.com/mcp/\"\nheaders = { Authorization = \"Bearer ${GITHUB_TOKEN}\" }\n",
        "[backends.sentry]\ntransport = \"sse\"\nurl = \"https://mcp.sentry.dev/sse\"\n",
        "[backends.app-db]\ntransport = \"stdio\"\ncommand = \"node\"\nargs = [\"scripts/db-mcp.js\"]\nenv = { APP_API_KEY = \"${APP_API_KEY}\", DATABASE_URL = \"${DATABASE_URL}\" }\ncwd = \"/home/me/app\"\ntimeout = \"30s\"\n",
        "[backends.linear]\ntransport = \"sse\"\nurl = \"https://mcp.linear.app/sse\"\n",
        "[backends.docs]\ntransport = \"http\"\nurl = \"https://docs.internal.example/mcp\"\nheaders = { X-API-Key = \"${DOCS_API_KEY}\" }\n",
        // VS Code: `type` decides; inputs become variables.
        "[backends.legacy]\ntransport = \"sse\"\nurl = \"http://localhost:8931/sse\"\n",
        "[backends.my-remote]\ntransport = \"http\"\nurl = \"http://localhost:3000/mcp\"\nheaders = { Authorization = \"Bearer ${PERPLEXITY_KEY}\" }\n",
        "# export PERPLEXITY_KEY  # VS Code input `perplexity-key`: Perplexity API Key\n[backends.Perplexity]\n",
        // Plain mcpServers, with a name that is not a valid backend name.
        "[backends.My-Tools]\ntransport = \"stdio\"\ncommand = \"my-tools-mcp\"\nargs = [\"--port\", \"0\"]\nenv = { MY_TOOLS_SECRET = \"${MY_TOOLS_SECRET}\" }\n",
    ] {
        assert!(toml.contains(table), "missing\n{table}\nin\n{toml}");
    }
    // Cursor: `${workspaceFolder}` is the project folder, which is also the cwd.
    let proj = samples().join("cursor/proj").canonicalize().unwrap();
    let notes = format!(
        "[backends.notes]\ntransport = \"stdio\"\ncommand = \"python3\"\nargs = [\"{0}/tools/notes_server.py\"]\ncwd = \"{0}\"\n",
        proj.display()
    );
    assert!(toml.contains(&notes), "missing\n{notes}\nin\n{toml}");
    assert_eq!(toml.matches("\n[backends.").count(), 21, "{toml}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, toml).unwrap();
    let vars = exported(toml);
    assert_eq!(vars.len(), 11, "{vars:?}");
    let ok = check(&file, &vars);
    assert_eq!(ok.code, 0, "{}\n{toml}", ok.stderr);
    assert!(
        ok.stdout.contains("ok: 21 backend(s), 20 enabled"),
        "{}",
        ok.stdout
    );
    // Without the variables the gateway refuses the file: the comments are needed.
    let refused = check(&file, &[]);
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("environment variable `GITHUB_TOKEN` is not set"),
        "{}",
        refused.stderr
    );
}

#[test]
fn secrets_become_variables_and_are_never_printed() {
    let run = import(&ALL);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for secret in SECRETS {
        assert!(
            !run.stdout.contains(secret),
            "{secret} copied:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(secret),
            "{secret} reported:\n{}",
            run.stderr
        );
    }
    let toml = &run.stdout;
    for (reference, comment) in [
        (
            "GITHUB_PERSONAL_ACCESS_TOKEN = \"${GITHUB_PERSONAL_ACCESS_TOKEN}\"",
            "# export GITHUB_PERSONAL_ACCESS_TOKEN  # was the value of env GITHUB_PERSONAL_ACCESS_TOKEN",
        ),
        (
            "BRAVE_API_KEY = \"${BRAVE_API_KEY}\", LOG_LEVEL = \"info\"",
            "# export BRAVE_API_KEY  # was the value of env BRAVE_API_KEY",
        ),
        (
            "\"postgresql://app:${POSTGRES_PASSWORD}@localhost:5432/appdb\"",
            "# export POSTGRES_PASSWORD  # was the password in a url",
        ),
        (
            "url = \"https://search.example.com/mcp?apiKey=${REMOTE_SEARCH_APIKEY}&region=eu\"",
            "# export REMOTE_SEARCH_APIKEY  # was the url parameter apiKey",
        ),
        (
            "\"Bearer ${GITHUB_TOKEN}\"",
            "# export GITHUB_TOKEN  # was in header Authorization",
        ),
    ] {
        assert!(toml.contains(reference), "missing {reference}\n{toml}");
        assert!(toml.contains(comment), "missing {comment}\n{toml}");
    }
    // `${env:VAR}` (Cursor) and `${VAR}` (Claude Code) are kept as `${VAR}`;
    // a default is dropped with a report.
    let cursor = import(&[CURSOR]);
    assert!(
        cursor.stdout.contains(
            "env = { GITHUB_PERSONAL_ACCESS_TOKEN = \"${GITHUB_PERSONAL_ACCESS_TOKEN}\" }"
        )
    );
    assert!(toml.contains("DATABASE_URL = \"${DATABASE_URL}\""));
    assert!(run.stderr.contains(
        "claude-code/.claude.json: $.projects[\"/home/me/app\"].mcpServers.app-db.env.APP_API_KEY: `${APP_API_KEY:-dev-key}`: gateway.toml has no defaults; set APP_API_KEY (the client's default was \"dev-key\")"
    ), "{}", run.stderr);
}

#[test]
fn unsupported_fields_and_renames_are_reported_with_file_and_json_path() {
    let run = import(&ALL);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for line in [
        "claude-desktop/claude_desktop_config.json: $.mcpServers[\"weather.local\"].autoApprove: not supported, ignored (the gateway asks no approvals; allow-lists are [auth.tokens] `tools`)",
        "cursor/proj/.cursor/mcp.json: $.mcpServers.notes.envFile: not supported, ignored: set those variables in the gateway's environment",
        "vscode/proj/.vscode/mcp.json: $.servers.github.dev: not supported, ignored",
        "plain/servers.json: $.mcpServers.memory.alwaysAllow: not supported, ignored (the gateway asks no approvals; allow-lists are [auth.tokens] `tools`)",
        "claude-desktop/claude_desktop_config.json: $.mcpServers[\"weather.local\"]: \"weather.local\" is not a valid backend name (letters, digits, `_`, `-`; no separator; at most 40 characters); imported as `weather-local`",
        "claude-code/.claude.json: $.mcpServers.github: name `github` is already used by claude-desktop/claude_desktop_config.json $.mcpServers.github; imported as `github-2`",
        "vscode/proj/.vscode/mcp.json: $.servers.github: name `github` is already used by claude-desktop/claude_desktop_config.json $.mcpServers.github; imported as `github-4`",
    ] {
        assert!(
            run.stderr.lines().any(|l| l == line),
            "missing\n{line}\nin\n{}",
            run.stderr
        );
    }
    // Reports go to stderr only; stdout is TOML.
    assert!(!run.stdout.contains("not supported"));
    toml::from_str::<toml::Table>(&run.stdout).expect("stdout is TOML");
}

#[test]
fn write_merges_into_a_file_keeping_its_text_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let original = "# My gateway. Keep this comment.\n[server]\nlisten = \"127.0.0.1:9000\" # local only\n\n\
                    # The GitHub server, configured by hand.\n[backends.github]\ntransport = \"stdio\"\ncommand = \"github-mcp\"\n\n\
                    [backends.files]\ntransport = \"stdio\"\ncommand = \"fs-mcp\"\nprefix = \"filesystem\"\n\n\
                    [limits]\nmax_concurrent_requests = 64 # trailing comment\n";
    std::fs::write(&file, original).unwrap();
    let target = file.to_str().unwrap();
    let run = manifold(&["import", DESKTOP, "--write", target], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing printed with --write");
    let merged = std::fs::read_to_string(&file).unwrap();
    assert!(
        merged.starts_with(original),
        "the old text must stay as it was:\n{merged}"
    );
    // `github` is a backend of the target and `filesystem` a prefix there.
    assert!(merged.contains("\n[backends.github-2]\n"), "{merged}");
    assert!(merged.contains("\n[backends.filesystem-2]\n"), "{merged}");
    assert!(!merged.contains("\n[backends]\n"), "{merged}");
    let github = format!(
        "{DESKTOP}: $.mcpServers.github: name `github` is already used by a backend of {target}; imported as `github-2`"
    );
    assert!(run.stderr.lines().any(|l| l == github), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{target}: added 5 backend(s)")),
        "{}",
        run.stderr
    );
    let ok = check(&file, &exported(&merged));
    assert_eq!(ok.code, 0, "{}\n{merged}", ok.stderr);
    assert!(
        ok.stdout
            .contains("ok: 7 backend(s), 6 enabled; serving http://127.0.0.1:9000/mcp"),
        "{}",
        ok.stdout
    );

    // A target that is not TOML is refused with its position and left alone.
    std::fs::write(&file, "[server\nlisten = 1\n").unwrap();
    let bad = manifold(&["import", DESKTOP, "--write", target], &[]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.starts_with(&format!("{target}:1:")),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("invalid TOML"), "{}", bad.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "[server\nlisten = 1\n"
    );

    // A missing target is created.
    let fresh = dir.path().join("new.toml");
    let run = manifold(&["import", VSCODE, "--write", fresh.to_str().unwrap()], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ok = check(&fresh, &exported(&std::fs::read_to_string(&fresh).unwrap()));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn unreadable_or_invalid_files_exit_1_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("mcp.json");
    std::fs::write(
        &bad,
        "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" \"args\": [] }\n  }\n}\n",
    )
    .unwrap();
    let other = dir.path().join("package.json");
    std::fs::write(&other, "{\"name\": \"app\", \"version\": \"1.0.0\"}").unwrap();
    let missing = dir.path().join("nope.json");
    let run = import(&[
        bad.to_str().unwrap(),
        PLAIN,
        other.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing is imported when a file is bad");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    assert_eq!(
        lines[0],
        format!("{}:3:27: invalid JSON: expected `,` or `}}`", bad.display())
    );
    assert!(
        lines[1].starts_with(&format!("{}: no `mcpServers`", other.display())),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("{}: cannot read:", missing.display())),
        "{}",
        lines[2]
    );
}

#[test]
fn prefix_from_none_exposes_names_bare() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let run = manifold(
        &[
            "import",
            PLAIN,
            "--prefix-from",
            "none",
            "--write",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("prefix = \"\"").count(), 2, "{text}");
    let ok = check(&file, &exported(&text));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains("(no prefix)"), "{}", ok.stdout);
    let wrong = manifold(&["import", PLAIN, "--prefix-from", "file"], &[]);
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
}
