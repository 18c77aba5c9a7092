use super::*;
use crate::config::interpolate::expand;

use super::test_errors as errors;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse_str(
        "[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\n",
        "g.toml",
        None,
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8123");
    let a = &c.backends["a"];
    assert_eq!(a.prefix, "a");
    assert_eq!(a.timeout, Duration::from_secs(60));
    assert!(a.enabled);
}

#[test]
fn reports_every_error_with_line_and_column() {
    let text = "[server]\nlisten = \"nope\"\n\n[backends.a]\ntransport = \"stdio\"\ncomand = \"x\"\n\n[backends.b]\ntransport = \"http\"\n\n[backends.c]\ntransport = \"stdio\"\ncommand = \"y\"\nprefix = \"b\"\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("gateway.toml:2:10: invalid listen address"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("gateway.toml:6:1: unknown field `comand`"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("gateway.toml:9:13: backend `b`: transport \"http\" needs `url`"),
        "{}",
        errs[2]
    );
    assert!(
        errs[3].starts_with("gateway.toml:14:10: backend `c` uses prefix \"b\""),
        "{}",
        errs[3]
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[server\nlisten = 1\n");
    assert!(!errs.is_empty());
    assert!(errs[0].starts_with("gateway.toml:1:"), "{errs:?}");
}

#[test]
fn env_interpolation_and_unset_variable() {
    let lookup = |n: &str| (n == "HOME_X").then(|| "/h".to_string());
    assert_eq!(expand("a${HOME_X}b$${LIT}", &lookup).unwrap(), "a/hb${LIT}");
    assert_eq!(
        expand("${NOPE}", &lookup).unwrap_err(),
        "environment variable `NOPE` is not set"
    );
    let errs = errors(
        "[backends.a]\ntransport = \"stdio\"\ncommand = \"${MANIFOLD_TEST_SURELY_UNSET}\"\n",
    );
    assert_eq!(
        errs,
        vec!["gateway.toml:3:11: environment variable `MANIFOLD_TEST_SURELY_UNSET` is not set"]
    );
}

#[test]
fn prefix_with_separator_and_long_names() {
    let errs =
        errors("[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"my__fs\"\n");
    assert!(errs[0].contains("contains the separator"), "{errs:?}");
    let long = "x".repeat(70);
    let errs = errors(&format!(
        "[backends.a]\ntransport = \"stdio\"\ncommand = \"x\"\ntools = {{ include = [\"{long}\"] }}\n"
    ));
    assert!(errs[0].contains("over the limit of 64"), "{errs:?}");
}

#[test]
fn fields_of_another_transport_are_rejected() {
    let errs = errors(
        "[backends.a]\ntransport = \"http\"\nurl = \"http://127.0.0.1:1/mcp\"\ncommand = \"x\"\n",
    );
    assert_eq!(
        errs,
        vec!["gateway.toml:4:11: `command` does not apply to transport \"http\""]
    );
}

#[test]
fn unknown_section_is_an_error() {
    let errs = errors("[sever]\nlisten = \"127.0.0.1:1\"\n");
    assert!(
        errs[0].starts_with("gateway.toml:1:2: unknown section `sever`"),
        "{errs:?}"
    );
}
