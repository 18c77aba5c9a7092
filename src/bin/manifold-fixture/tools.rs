//! The fixture's tools as `tools/list` shows them; what each does is in `calls.rs`.

use rmcp::model::Tool;
use serde_json::json;

use crate::Args;
use crate::server::schema;

/// The input schema a tool declares (what clients see, not what it checks).
#[derive(Clone, Copy)]
enum Shape {
    /// `{"message": string}`, required.
    Message,
    /// `{"a": number, "b": number}`, both required.
    Numbers,
    /// `{"ms": integer}`.
    Millis,
    /// An object with no properties.
    Empty,
    /// Any object.
    Object,
}

/// Always present, in this order.
const BASE: &[(&str, &str, Shape)] = &[
    ("echo", "Returns its `message` argument", Shape::Message),
    ("add", "Adds two numbers", Shape::Numbers),
    ("fail", "Always returns a tool error", Shape::Empty),
    (
        "rpc_error",
        "Answers with JSON-RPC error -32042",
        Shape::Empty,
    ),
    ("sleep", "Sleeps `ms` milliseconds", Shape::Millis),
    ("hang", "Never answers", Shape::Empty),
    ("crash", "Exits the process mid-call", Shape::Empty),
    (
        "resource_link",
        "Returns a link to fixture://info",
        Shape::Empty,
    ),
    (
        "progress",
        "Sends `steps` progress notifications, `delay_ms` apart",
        Shape::Object,
    ),
    (
        "sample",
        "Asks the client to sample `rounds` times (after `delay_ms`); returns the texts",
        Shape::Object,
    ),
    (
        "elicit",
        "Asks the client for input; returns its answer",
        Shape::Object,
    ),
    (
        "roots",
        "Asks the client for its roots; returns their URIs",
        Shape::Object,
    ),
    (
        "log",
        "Sends a log message at `level` (after the call, `later_ms` later, when given)",
        Shape::Object,
    ),
    (
        "roots_later",
        "Asks the client for its roots `count` times, `later_ms` after answering, then logs \"roots asked\"; `stats` shows the answer",
        Shape::Object,
    ),
    (
        "add_tool",
        "Adds tool `name` (at epoch ms `at_ms`) and announces the change",
        Shape::Object,
    ),
    (
        "announce",
        "Announces a tool list change without changing anything",
        Shape::Empty,
    ),
    (
        "flood",
        "Sends `count` log messages, then adds tool `flooded` and announces it",
        Shape::Object,
    ),
    ("touch", "Sends resources/updated for `uri`", Shape::Object),
    (
        "wait_cancel",
        "Waits until the client cancels the call",
        Shape::Empty,
    ),
    (
        "stats",
        "Returns pid, cancellations, subscriptions, log level and calls running",
        Shape::Empty,
    ),
];

/// With `--process-tools`.
const PROCESS: &[(&str, &str, Shape)] = &[
    (
        "env",
        "Returns this process's environment, one NAME=VALUE a line",
        Shape::Empty,
    ),
    (
        "stderr",
        "Writes `bytes` bytes without a newline, then invalid UTF-8 and a newline, to stderr",
        Shape::Object,
    ),
];

/// With `--append-tool`.
const APPEND: (&str, &str, Shape) = (
    "append",
    "Waits `ms` milliseconds, then appends `line` and a newline to the file `path`",
    Shape::Object,
);

/// With `--meta-tool`.
const META: (&str, &str, Shape) = (
    "meta",
    "Returns the request's `_meta` as JSON",
    Shape::Empty,
);

fn tool(name: impl Into<String>, description: &'static str, shape: Shape) -> Tool {
    let schema = schema(match shape {
        Shape::Message => {
            json!({"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})
        }
        Shape::Numbers => {
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})
        }
        Shape::Millis => json!({"type": "object", "properties": {"ms": {"type": "integer"}}}),
        Shape::Empty => json!({"type": "object", "properties": {}}),
        Shape::Object => json!({"type": "object"}),
    });
    Tool::new(name.into(), description, schema)
}

/// The tools a fixture started with `args` lists.
pub(crate) fn list(args: &Args) -> Vec<Tool> {
    let mut tools: Vec<Tool> = if args.only_extra_tools {
        Vec::new()
    } else {
        BASE.iter().map(|&(n, d, s)| tool(n, d, s)).collect()
    };
    for i in 0..args.extra_tools {
        tools.push(tool(format!("tool_{i}"), "An extra tool", Shape::Empty));
    }
    if args.process_tools {
        tools.extend(PROCESS.iter().map(|&(n, d, s)| tool(n, d, s)));
    }
    let optional = [(args.append_tool, APPEND), (args.meta_tool, META)];
    for (on, (n, d, s)) in optional {
        if on {
            tools.push(tool(n, d, s));
        }
    }
    if args.eras {
        tools.extend(super::eras::tools());
    }
    if args.long_tool {
        tools.push(tool(
            "l".repeat(70),
            "A tool with a very long name",
            Shape::Empty,
        ));
    }
    tools
}
