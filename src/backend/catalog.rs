//! A backend's lists as clients see them: filtered, prefixed, and indexed for routing.
//!
//! A [`Catalog`] is built once per fill (connect or `list_changed`) and then
//! only read, so lookups on the call path are a hash probe with no lock.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{
    CallToolResult, ContentBlock, Prompt, Resource, ResourceContents, ResourceTemplate,
    TaskPayload, Tool,
};

use crate::config::{BackendConfig, MAX_EXPOSED_NAME, exposed_name};

/// The raw lists a backend returned, before naming rules are applied.
#[derive(Clone, Debug, Default)]
pub struct RawLists {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
}

/// One backend's exposed lists and the exposed → original name maps.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    /// exposed tool name → the backend's own name
    tool_names: HashMap<Arc<str>, Arc<str>>,
    prompt_names: HashMap<Arc<str>, Arc<str>>,
    /// Names dropped because they would exceed the length limit, for `check --connect` and logs.
    pub too_long: Vec<String>,
}

impl Catalog {
    pub fn build(config: &BackendConfig, separator: &str, raw: RawLists) -> Self {
        let mut c = Catalog::default();
        for mut tool in raw.tools {
            if !config.tools.allows(&tool.name) {
                continue;
            }
            let exposed = exposed_name(&config.prefix, separator, &tool.name);
            if exposed.chars().count() > MAX_EXPOSED_NAME {
                c.too_long.push(exposed);
                continue;
            }
            let original: Arc<str> = Arc::from(tool.name.as_ref());
            let exposed: Arc<str> = Arc::from(exposed);
            tool.name = exposed.to_string().into();
            prefix_app_uris(&config.prefix, &mut tool);
            if c.tool_names.insert(exposed, original).is_none() {
                c.tools.push(tool);
            }
        }
        for mut prompt in raw.prompts {
            if !config.prompts.allows(&prompt.name) {
                continue;
            }
            let exposed = exposed_name(&config.prefix, separator, &prompt.name);
            if exposed.chars().count() > MAX_EXPOSED_NAME {
                c.too_long.push(exposed);
                continue;
            }
            let original: Arc<str> = Arc::from(prompt.name.as_str());
            prompt.name = exposed.clone();
            if c.prompt_names
                .insert(Arc::from(exposed), original)
                .is_none()
            {
                c.prompts.push(prompt);
            }
        }
        c.resources = raw
            .resources
            .into_iter()
            .map(|mut r| {
                r.uri = prefix_uri(&config.prefix, &r.uri);
                r
            })
            .collect();
        c.templates = raw
            .templates
            .into_iter()
            .map(|mut t| {
                t.uri_template = prefix_uri(&config.prefix, &t.uri_template);
                t
            })
            .collect();
        c
    }

    /// The backend's own name of an exposed tool, if this backend exposes it.
    pub fn tool(&self, exposed: &str) -> Option<&Arc<str>> {
        self.tool_names.get(exposed)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Arc<str>> {
        self.prompt_names.get(exposed)
    }
}

/// MCP Apps: a tool names its UI resource in `_meta.ui.resourceUri` (and
/// the older flat key `ui/resourceUri`). The resource is listed under the
/// prefixed URI, so the reference must carry the prefix too, or the client
/// cannot read the app.
fn prefix_app_uris(prefix: &str, tool: &mut Tool) {
    let Some(meta) = tool.meta.as_mut() else {
        return;
    };
    let rewrite = |v: &mut serde_json::Value| {
        if let Some(uri) = v.as_str().filter(|u| u.starts_with("ui://")) {
            *v = prefix_uri(prefix, uri).into();
        }
    };
    if let Some(v) = meta.0.get_mut("ui/resourceUri") {
        rewrite(v);
    }
    if let Some(v) = meta
        .0
        .get_mut("ui")
        .and_then(|ui| ui.as_object_mut())
        .and_then(|ui| ui.get_mut("resourceUri"))
    {
        rewrite(v);
    }
}

/// `{prefix}+{uri}`, or the URI itself for an empty prefix.
pub fn prefix_uri(prefix: &str, uri: &str) -> String {
    if prefix.is_empty() {
        uri.to_string()
    } else {
        format!("{prefix}+{uri}")
    }
}

/// Rewrites the backend's resource URIs in a result to their exposed form.
pub fn prefix_contents(prefix: &str, contents: &mut [ResourceContents]) {
    for c in contents {
        match c {
            ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } => {
                *uri = prefix_uri(prefix, uri);
            }
            _ => {}
        }
    }
}

/// A content block with its resource URIs in their exposed form.
pub fn prefix_block(prefix: &str, block: &mut ContentBlock) {
    match block {
        ContentBlock::ResourceLink(r) => r.uri = prefix_uri(prefix, &r.uri),
        ContentBlock::Resource(e) => prefix_contents(prefix, std::slice::from_mut(&mut e.resource)),
        _ => {}
    }
}

/// A backend's finished task result with its resource links prefixed, as a
/// direct call's content is.
pub fn prefix_task_payload(prefix: &str, payload: &mut TaskPayload) {
    if prefix.is_empty() {
        return;
    }
    if let TaskPayload::Completed { result } = payload
        && let Ok(mut r) =
            serde_json::from_value::<CallToolResult>(serde_json::Value::Object(result.clone()))
    {
        for block in &mut r.content {
            prefix_block(prefix, block);
        }
        if let Ok(serde_json::Value::Object(o)) = serde_json::to_value(r) {
            *result = o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn app_ui_references_get_the_resource_prefix() {
        let cfg = parse_str(
            "[backends.app]\ntransport = \"stdio\"\ncommand = \"x\"\n",
            "g",
            None,
        )
        .expect("config");
        let cfg = &cfg.backends["app"];
        let mut t = tool("show");
        t.meta = Some(rmcp::model::MetaObject(
            serde_json::json!({"ui": {"resourceUri": "ui://show/app.html", "visibility": ["model"]}, "ui/resourceUri": "ui://show/app.html", "other": "ui://kept"})
                .as_object()
                .cloned()
                .expect("object"),
        ));
        let raw = RawLists {
            tools: vec![t],
            ..Default::default()
        };
        let c = Catalog::build(cfg, "__", raw);
        let meta = serde_json::to_value(&c.tools[0].meta).expect("json");
        assert_eq!(meta["ui"]["resourceUri"], "app+ui://show/app.html");
        assert_eq!(meta["ui"]["visibility"][0], "model");
        assert_eq!(meta["ui/resourceUri"], "app+ui://show/app.html");
        assert_eq!(meta["other"], "ui://kept");
    }

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_string(), "d", Arc::new(Default::default()))
    }

    #[test]
    fn prefixes_filters_and_indexes() {
        let cfg = parse_str(
            "[backends.fs]\ntransport = \"stdio\"\ncommand = \"x\"\ntools = { exclude = [\"secret*\"] }\n",
            "g",
            None,
        )
        .unwrap();
        let b = &cfg.backends["fs"];
        let raw = RawLists {
            tools: vec![tool("read"), tool("secretKey"), tool(&"y".repeat(70))],
            resources: vec![Resource::new("file:///a", "a")],
            ..Default::default()
        };
        let c = Catalog::build(b, "__", raw);
        let names: Vec<_> = c.tools.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, vec!["fs__read"]);
        assert_eq!(c.tool("fs__read").map(|s| s.as_ref()), Some("read"));
        assert_eq!(c.too_long.len(), 1);
        assert_eq!(c.resources[0].uri, "fs+file:///a");
    }
}
