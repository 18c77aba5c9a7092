//! What backends send back reaches exactly the right client sessions: each
//! test drives two or more live sessions through a real gateway with real
//! backend processes.
#![allow(deprecated)] // sampling, roots and logging are deprecated by SEP-2577 but are the ≤2025-11-25 wire protocol

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::*;
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Event {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
    Updated(String),
    ToolsChanged,
    Sampled,
}

/// A test client: answers sampling, elicitation and roots with its own name,
/// and records every notification it gets.
#[derive(Clone)]
struct Recorder {
    name: String,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            events: Arc::default(),
        }
    }
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events().iter().filter(|e| f(e)).count()
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_roots()
            .enable_roots_list_changed()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(caps, Implementation::new(self.name.clone(), "1"))
    }

    async fn create_message(
        &self,
        _: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.push(Event::Sampled);
        match self.name.as_str() {
            "silent" => std::future::pending().await,
            "refuser" => Err(ErrorData::invalid_request(
                "the user declined to sample",
                None,
            )),
            name => Ok(CreateMessageResult::new(
                SamplingMessage::assistant_text(format!("answer from {name}")),
                "test-model".into(),
            )),
        }
    }

    async fn create_elicitation(
        &self,
        _: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"name": self.name})))
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(vec![Root::new(format!(
            "file:///home/{}",
            self.name
        ))]))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.push(Event::Progress(p));
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Event::Log(p));
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.push(Event::Updated(p.uri));
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.push(Event::ToolsChanged);
    }
}

type Rc = RunningService<RoleClient, Recorder>;

async fn connect(url: &str, name: &str) -> (Rc, Recorder) {
    let recorder = Recorder::new(name);
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .expect("client connects");
    (client, recorder)
}

async fn call(client: &Rc, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

async fn text(client: &Rc, tool: &str, arguments: Value) -> String {
    first_text(&call(client, tool, arguments).await)
}

async fn stats(client: &Rc, prefix: &str) -> Value {
    serde_json::from_str(&text(client, &format!("{prefix}__stats"), json!({})).await).unwrap()
}

/// Waits until backend `prefix` has `n` tool calls running (reached it and not answered).
async fn wait_running(client: &Rc, prefix: &str, n: u64) {
    wait_until(&format!("{n} calls running at {prefix}"), 10, async || {
        stats(client, prefix).await["running"] == n
    })
    .await;
}

async fn status(client: &Rc) -> Value {
    call(client, "gateway_status", json!({}))
        .await
        .structured_content
        .expect("structured status")
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_goes_only_to_the_calling_session_with_its_own_token() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    let send = |c: &Rc| {
        let req = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new("fx__progress")
                .with_arguments(args(json!({"steps": 5, "delay_ms": 20}))),
        ));
        let peer = c.peer().clone();
        async move {
            peer.send_request_with_option(req, PeerRequestOptions::no_options())
                .await
                .unwrap()
        }
    };
    let (ha, hb) = tokio::join!(send(&a), send(&b));
    let (ta, tb) = (ha.progress_token.clone(), hb.progress_token.clone());
    let (resa, resb) = tokio::join!(ha.await_response(), hb.await_response());
    resa.unwrap();
    resb.unwrap();
    for (recorder, token) in [(&ra, &ta), (&rb, &tb)] {
        wait_for("five progress notifications", 10, || {
            recorder.count(|e| matches!(e, Event::Progress(_))) >= 5
        })
        .await;
        let progress: Vec<ProgressNotificationParam> = recorder
            .events()
            .into_iter()
            .filter_map(|e| {
                if let Event::Progress(p) = e {
                    Some(p)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(progress.len(), 5, "{}: {progress:?}", recorder.name);
        assert!(
            progress.iter().all(|p| &p.progress_token == token),
            "{}: foreign token in {progress:?}",
            recorder.name
        );
        // Sorted: rmcp's client handles each notification on a task of its
        // own (the wire order is asserted in tests/json_reply.rs).
        let mut values: Vec<f64> = progress.iter().map(|p| p.progress).collect();
        values.sort_by(f64::total_cmp);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }
    let s = status(&a).await;
    assert!(
        s["notifications"]["progress"]["forwarded"]
            .as_u64()
            .unwrap()
            >= 10,
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_elicitation_and_roots_over_streamable_http_reach_exactly_the_caller() {
    let web = fixture("http", &[]);
    let (gw, _cfg) = gateway(&url_backend("web", "http", &web.url, ""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    // Both calls are in flight on one backend connection when the backend asks.
    let (sa, sb) = tokio::join!(
        text(&a, "web__sample", json!({"delay_ms": 300})),
        text(&b, "web__sample", json!({"delay_ms": 300}))
    );
    assert_eq!(sa, "answer from A");
    assert_eq!(sb, "answer from B");
    assert_eq!(ra.count(|e| matches!(e, Event::Sampled)), 1);
    assert_eq!(rb.count(|e| matches!(e, Event::Sampled)), 1);
    let (ea, eb) = tokio::join!(
        text(&a, "web__elicit", json!({})),
        text(&b, "web__elicit", json!({}))
    );
    assert!(
        ea.contains("\"name\":\"A\"") && ea.contains("accept"),
        "{ea}"
    );
    assert!(eb.contains("\"name\":\"B\""), "{eb}");
    let (oa, ob) = tokio::join!(
        text(&a, "web__roots", json!({})),
        text(&b, "web__roots", json!({}))
    );
    assert_eq!(oa, "file:///home/A");
    assert_eq!(ob, "file:///home/B");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_shared_backend_relays_exactly_for_one_session_and_refuses_ambiguity() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    assert_eq!(text(&a, "fx__sample", json!({})).await, "answer from A");
    assert_eq!(text(&b, "fx__roots", json!({})).await, "file:///home/B");

    // A has a call in flight on the same stdio connection when B's call asks:
    // the wire cannot say whose question it is, so it is refused, never guessed.
    let a2 = a.peer().clone();
    let slow = tokio::spawn(async move {
        a2.call_tool(
            CallToolRequestParams::new("fx__sleep").with_arguments(args(json!({"ms": 1500}))),
        )
        .await
    });
    wait_running(&b, "fx", 1).await;
    let refused = text(&b, "fx__sample", json!({})).await;
    assert!(refused.contains("isolation = \"per_session\""), "{refused}");
    assert_eq!(
        ra.count(|e| matches!(e, Event::Sampled)),
        1,
        "A was asked B's question"
    );
    assert_eq!(rb.count(|e| matches!(e, Event::Sampled)), 0);
    slow.await.unwrap().unwrap();
    let s = status(&a).await;
    assert_eq!(s["unattributable_requests"], 1, "{s:#}");
    assert_eq!(s["notifications"]["sampling"]["dropped"], 1, "{s:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_session_isolation_gives_each_session_its_own_process_and_exact_relays() {
    let (gw, _cfg) = gateway(&stdio_backend("iso", "isolation = \"per_session\""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    let (sa, sb) = tokio::join!(
        text(&a, "iso__sample", json!({"delay_ms": 300})),
        text(&b, "iso__sample", json!({"delay_ms": 300}))
    );
    assert_eq!(
        (sa.as_str(), sb.as_str()),
        ("answer from A", "answer from B")
    );
    let (pa, pb) = (
        stats(&a, "iso").await["pid"].as_u64().unwrap(),
        stats(&b, "iso").await["pid"].as_u64().unwrap(),
    );
    assert_ne!(pa, pb, "sessions share a process");
    // What a session's own connection says goes to that session only.
    text(
        &a,
        "iso__log",
        json!({"level": "error", "message": "A's secret"}),
    )
    .await;
    wait_for("A's log", 10, || {
        ra.count(|e| matches!(e, Event::Log(_))) == 1
    })
    .await;
    // A barrier: B's own log comes after anything of A's that went astray.
    text(&b, "iso__log", json!({"message": "B's marker"})).await;
    wait_for("B's marker", 10, || {
        rb.count(|e| matches!(e, Event::Log(_))) >= 1
    })
    .await;
    assert_eq!(
        rb.count(|e| matches!(e, Event::Log(_))),
        1,
        "B got A's log message: {:?}",
        rb.events()
    );
    assert_eq!(
        stats(&a, "iso").await["pid"].as_u64().unwrap(),
        pa,
        "a session's process is reused"
    );
    b.cancel().await.unwrap();
    wait_for("B's backend process to exit", 10, || {
        !std::path::Path::new(&format!("/proc/{pb}")).exists()
    })
    .await;
    assert_eq!(stats(&a, "iso").await["pid"].as_u64().unwrap(), pa);
}

#[tokio::test(flavor = "multi_thread")]
async fn log_messages_follow_each_sessions_level() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    a.set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();
    b.set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    assert_eq!(
        stats(&a, "fx").await["log_level"],
        "debug",
        "the backend runs at the most verbose level asked for"
    );
    // Sent after the calls (outside any call), so the sessions' levels
    // decide; a message during a call would go to the caller only.
    text(
        &a,
        "fx__log",
        json!({"level": "info", "message": "for A only", "later_ms": 10}),
    )
    .await;
    text(
        &a,
        "fx__log",
        json!({"level": "error", "message": "for both", "later_ms": 30}),
    )
    .await;
    wait_for("A's two messages", 10, || {
        ra.count(|e| matches!(e, Event::Log(_))) == 2
    })
    .await;
    wait_for("B's one message", 10, || {
        rb.count(|e| matches!(e, Event::Log(_))) == 1
    })
    .await;
    // A barrier: one more message for both, sent after the others on the
    // same pipe; anything meant for A alone reaches B, if at all, before it.
    text(
        &a,
        "fx__log",
        json!({"level": "error", "message": "barrier", "later_ms": 1}),
    )
    .await;
    wait_for("B's barrier", 10, || {
        rb.count(|e| matches!(e, Event::Log(p) if p.data == json!("barrier"))) == 1
    })
    .await;
    let b_logs: Vec<Event> = rb
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Log(p) if p.data != json!("barrier")))
        .collect();
    assert_eq!(b_logs.len(), 1, "{b_logs:?}");
    let Event::Log(p) = &b_logs[0] else {
        unreachable!()
    };
    assert_eq!(p.data, json!("for both"));
    assert_eq!(p.logger.as_deref(), Some("fx/fixture"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_updates_reach_only_subscribers_and_backend_subscriptions_are_shared() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, ra) = connect(&gw.url, "A").await;
    let (b, rb) = connect(&gw.url, "B").await;
    let uri = "fx+fixture://info";
    a.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    assert_eq!(
        stats(&a, "fx").await["subscriptions"],
        json!(["fixture://info"])
    );
    text(&b, "fx__touch", json!({"uri": "fixture://info"})).await;
    wait_for("A's update", 10, || {
        ra.count(|e| matches!(e, Event::Updated(u) if u == uri)) == 1
    })
    .await;
    b.subscribe(SubscribeRequestParams::new(uri)).await.unwrap();
    a.unsubscribe(UnsubscribeRequestParams::new(uri))
        .await
        .unwrap();
    assert_eq!(
        stats(&a, "fx").await["subscriptions"],
        json!(["fixture://info"]),
        "B still needs it"
    );
    text(&a, "fx__touch", json!({"uri": "fixture://info"})).await;
    wait_for("B's update", 10, || {
        rb.count(|e| matches!(e, Event::Updated(_))) == 1
    })
    .await;
    b.unsubscribe(UnsubscribeRequestParams::new(uri))
        .await
        .unwrap();
    assert_eq!(
        stats(&a, "fx").await["subscriptions"],
        json!([]),
        "the last unsubscribe reaches the backend"
    );
    // A barrier: an update A does subscribe to, sent after the one it must
    // not get; a stray update would reach A before it.
    let barrier = "fx+fixture://items/barrier";
    a.subscribe(SubscribeRequestParams::new(barrier))
        .await
        .unwrap();
    text(&b, "fx__touch", json!({"uri": "fixture://items/barrier"})).await;
    wait_for("A's barrier update", 10, || {
        ra.count(|e| matches!(e, Event::Updated(u) if u == barrier)) == 1
    })
    .await;
    assert_eq!(
        ra.count(|e| matches!(e, Event::Updated(u) if u == uri)),
        1,
        "A got an update after it unsubscribed"
    );
    let err = a
        .subscribe(SubscribeRequestParams::new("nobody+x://y"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown resource"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_changes_are_coalesced_and_sent_only_when_the_view_changes() {
    let config: String = (0..10)
        .map(|i| stdio_backend(&format!("fx{i}"), ""))
        .collect();
    let (gw, _cfg) = gateway(&config);
    let (a, ra) = connect(&gw.url, "A").await;
    let (_b, rb) = connect(&gw.url, "B").await;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 500;
    let names: Vec<String> = (0..10).map(|i| format!("fx{i}__add_tool")).collect();
    let calls = names
        .iter()
        .map(|n| text(&a, n, json!({"name": "new", "at_ms": at})));
    futures::future::join_all(calls).await;
    wait_for("both sessions told", 10, || {
        ra.count(|e| matches!(e, Event::ToolsChanged)) >= 1
            && rb.count(|e| matches!(e, Event::ToolsChanged)) >= 1
    })
    .await;
    // A quiet period longer than the coalescing window is what is tested:
    // no second notification follows within it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ra.count(|e| matches!(e, Event::ToolsChanged)),
        1,
        "ten backends changing at once → one notification"
    );
    assert_eq!(rb.count(|e| matches!(e, Event::ToolsChanged)), 1);
    let names: Vec<String> = a
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        (0..10).all(|i| names.contains(&format!("fx{i}__new"))),
        "{names:?}"
    );

    // Re-announcing an unchanged list tells nobody.
    text(&a, "fx3__announce", json!({})).await;
    // As above: that nothing arrives within the coalescing window is the test.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ra.count(|e| matches!(e, Event::ToolsChanged)), 1);
    assert_eq!(rb.count(|e| matches!(e, Event::ToolsChanged)), 1);
    let s = status(&a).await;
    assert_eq!(
        s["notifications"]["tools_list_changed"]["received"], 11,
        "{s:#}"
    );
    assert!(
        s["notifications"]["tools_list_changed"]["coalesced"]
            .as_u64()
            .unwrap()
            >= 9,
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_call_cancels_that_request_only() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, _) = connect(&gw.url, "A").await;
    let (b, _) = connect(&gw.url, "B").await;
    let wait = ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
        "fx__wait_cancel",
    )));
    let ha = a
        .peer()
        .send_request_with_option(wait.clone(), PeerRequestOptions::no_options())
        .await
        .unwrap();
    let hb = b
        .peer()
        .send_request_with_option(wait, PeerRequestOptions::no_options())
        .await
        .unwrap();
    wait_running(&b, "fx", 2).await;
    ha.cancel(Some("user pressed stop".into())).await.unwrap();
    let mut cancelled = 0;
    for _ in 0..100 {
        cancelled = stats(&b, "fx").await["cancelled"].as_u64().unwrap();
        if cancelled >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancelled, 1);
    // Watching for a cancellation that must not come: a bounded quiet period.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stats(&b, "fx").await["cancelled"],
        1,
        "B's call was cancelled too"
    );
    hb.cancel(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn relayed_requests_that_fail_or_time_out_give_the_backend_an_error() {
    let (gw, _cfg) = gateway(&format!(
        "[server]\nrelay_timeout = \"1s\"\n\n{}",
        stdio_backend("fx", "")
    ));
    let (silent, _) = connect(&gw.url, "silent").await;
    let started = Instant::now();
    let t = text(&silent, "fx__sample", json!({})).await;
    assert!(
        t.starts_with("request failed") && t.contains("did not answer within 1s"),
        "{t}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let (refuser, _) = connect(&gw.url, "refuser").await;
    let t = text(&refuser, "fx__sample", json!({})).await;
    assert!(t.contains("the user declined to sample"), "{t}");
    // A client that does not do sampling gets a clear error, and nobody else is asked.
    let plain = client(&gw.url).await;
    let r = plain
        .call_tool(CallToolRequestParams::new("fx__sample"))
        .await
        .unwrap();
    assert!(
        first_text(&r).contains("does not support sampling"),
        "{}",
        first_text(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_flooding_logs_is_rate_limited_and_the_last_list_change_still_lands() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, ra) = connect(&gw.url, "A").await;
    text(&a, "fx__flood", json!({"count": 3000})).await;
    wait_for("the list change after the flood", 10, || {
        ra.count(|e| matches!(e, Event::ToolsChanged)) == 1
    })
    .await;
    let names: Vec<String> = a
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"fx__flooded".to_string()), "{names:?}");
    // rmcp handles each notification in its own task (rmcp notes, P5): the
    // last log lines may be counted just after the list change lands.
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        let s = status(&a).await;
        if s["notifications"]["log"]["received"] == 3000 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = &s["notifications"]["log"];
    assert_eq!(log["received"], 3000, "{s:#}");
    let dropped = log["dropped"].as_u64().unwrap();
    assert!(dropped >= 1000, "the flood was not limited: {s:#}");
    let got = ra.count(|e| matches!(e, Event::Log(_)));
    assert!(
        got as u64 <= 3000 - dropped,
        "client got {got} of 3000 with {dropped} dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_disappears_mid_call_is_cleaned_up_and_felt_by_nobody_else() {
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (a, _) = connect(&gw.url, "A").await;
    let (b, _) = connect(&gw.url, "B").await;
    let wait = ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
        "fx__wait_cancel",
    )));
    let _pending = a
        .peer()
        .send_request_with_option(wait, PeerRequestOptions::no_options())
        .await
        .unwrap();
    wait_running(&b, "fx", 1).await;
    assert_eq!(status(&b).await["sessions"].as_array().unwrap().len(), 2);
    // A goes away with its call still running.
    a.cancel().await.unwrap();
    let mut cancelled = 0;
    for _ in 0..200 {
        cancelled = stats(&b, "fx").await["cancelled"].as_u64().unwrap();
        if cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        cancelled, 1,
        "the backend call of the vanished session was not cancelled"
    );
    assert_eq!(
        text(&b, "fx__echo", json!({"message": "still fine"})).await,
        "still fine"
    );
    let s = status(&b).await;
    assert_eq!(s["sessions"].as_array().unwrap().len(), 1, "{s:#}");
}

/// rmcp hands each notification from a backend to its handler on a task of
/// its own, while the answer completes the request at once: under load the
/// last progress, sent just before the answer, used to be dropped because the
/// call had already ended. Many calls at once, each sending its progress
/// right before answering: every notification arrives, none is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn progress_sent_just_before_the_answer_is_never_lost_under_load() {
    const CALLS: usize = 48;
    let (gw, _cfg) = gateway(&stdio_backend("fx", ""));
    let (client, recorder) = connect(&gw.url, "busy").await;
    let calls = (0..CALLS).map(|_| {
        let req = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new("fx__progress")
                .with_arguments(args(json!({"steps": 2, "delay_ms": 0}))),
        ));
        let peer = client.peer().clone();
        async move {
            let handle = peer
                .send_request_with_option(req, PeerRequestOptions::no_options())
                .await
                .unwrap();
            handle.await_response().await.unwrap()
        }
    });
    futures::future::join_all(calls).await;
    // The client's own handlers run on tasks of their own: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while recorder.count(|e| matches!(e, Event::Progress(_))) < CALLS * 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = status(&client).await;
    let counts = &s["notifications"]["progress"];
    assert_eq!(counts["dropped"], 0, "{counts:#}");
    // Each call's last progress (2 of 2) reached it; none arrived twice.
    let mut last: std::collections::HashMap<ProgressToken, f64> = Default::default();
    for e in recorder.events() {
        if let Event::Progress(p) = e {
            let v = last.entry(p.progress_token).or_default();
            *v = v.max(p.progress);
        }
    }
    assert_eq!(last.len(), CALLS, "{counts:#}");
    assert!(last.values().all(|v| *v == 2.0), "{last:?}");
    assert_eq!(
        recorder.count(|e| matches!(e, Event::Progress(_))) as u64,
        counts["forwarded"].as_u64().unwrap(),
        "{counts:#}"
    );
}
