//! Parked calls: server-to-client requests for 2026-07-28 clients (ADR 0015).
//!
//! A 2026-07-28 client takes no requests from the server during a call; a
//! server that needs sampling, elicitation or roots answers `InputRequired`
//! and the client retries the same request with the answers. Backends of the
//! initialize era ask during the call instead and wait for the answer. The
//! gateway bridges the two by *parking* the backend call:
//!
//! 1. A 2026-07-28 client's `tools/call`, `prompts/get` or `resources/read`
//!    to a shared backend runs on its own task (`Running`), whose progress
//!    and relayed requests go to a channel instead of a client's stream.
//! 2. The client request waits on that channel. When the backend asks, the
//!    request ends with `InputRequired`: the questions under keys of their
//!    own, and a sealed `requestState` (`state.rs`). The call waits in
//!    [`ParkedCalls`] with the questions' reply channels.
//! 3. The retry opens the state (a forged, foreign, altered or expired one is
//!    a `-32602` naming why), hands each answer to its question and waits for
//!    the call's next turn: the result, or another round.
//! 4. A call not taken up within `server.relay_timeout` expires: its
//!    questions are answered with an error saying the client did not answer
//!    in time, and the backend request is cancelled with the same reason.
//!
//! At most [`MAX_PARKED`] calls wait at once; a backend that asks when the
//! table is full gets an error saying so, and the call goes on.
//!
//! Progress: a parked call's progress goes to the client request attached to
//! it (the first request, then each retry while it waits), with that
//! request's own progress token; progress sent between rounds, when no
//! request is attached, is dropped (and counted). Log messages the call
//! causes go to the attached request the same way.

mod running;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{InputRequiredResult, InputResponses, ServerResult};
use tokio_util::sync::CancellationToken;

use crate::backend::CallError;
use crate::coordinator::{Hub, RelayJob};

pub(super) use running::{Attached, Running};
pub(super) use state::Binding;

use running::Turn;

/// The most calls that may wait for 2026-07-28 clients' answers at once.
/// Each holds a backend request open (and a `max_concurrent` slot where the
/// backend has one) for at most `server.relay_timeout`.
pub const MAX_PARKED: usize = 1024;

/// Calls waiting for a 2026-07-28 client's answers, shared by every request
/// handler of the front.
pub struct ParkedCalls {
    hub: Arc<Hub>,
    codec: rmcp::model::RequestStateCodec,
    next_call: AtomicU64,
    /// Calls between rounds, by id. Written when a round ends with
    /// `InputRequired` and when a retry or the expiry takes the call; never
    /// held across an await. At most [`MAX_PARKED`] entries.
    waiting: Mutex<HashMap<u64, Waiting>>,
    /// Calls that expired without an answer, for status.
    expired: AtomicU64,
}

/// A call between two rounds.
struct Waiting {
    running: Running,
    /// The round's questions by key, each with its reply to the backend.
    asked: BTreeMap<String, RelayJob>,
    round: u32,
    binding: Binding,
    /// Stops the expiry timer when a retry takes the call.
    timer: CancellationToken,
}

impl ParkedCalls {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            codec: state::codec(),
            next_call: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            expired: AtomicU64::new(0),
        }
    }
}

/// What a retry continues.
pub(super) enum Resumed {
    /// A parked call: the call, its id and the round just answered.
    Parked(Running, u64, u32),
    /// A 2026-07-28 backend's own round: retry the request with its state.
    Backend(Option<String>),
}

/// Where a parked call stands after a turn.
pub(super) struct Driven {
    /// The backend the call runs on (to map its result's names back).
    pub backend: Arc<crate::backend::Backend>,
    pub result: Result<ServerResult, CallError>,
}

impl ParkedCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For `/status`: calls waiting for answers now, the limit, and how many
    /// expired unanswered since start.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "waiting": self.lock().len(),
            "limit": MAX_PARKED,
            "expired": self.expired.load(Ordering::Relaxed),
        })
    }

    /// Runs a call's turns for the request `to` until it has a result, or a
    /// round of questions (then the call is parked and the result is
    /// `InputRequired`). `round` is the round this request answered (0 for
    /// the first request).
    pub(super) async fn drive(
        self: &Arc<Self>,
        mut running: Running,
        call: u64,
        round: u32,
        binding: Binding,
        to: &Attached<'_>,
        ttl: Duration,
    ) -> Driven {
        loop {
            let jobs = match running.next_turn(to, &self.hub).await {
                Turn::Done(result) => {
                    let result = match *result {
                        // A 2026-07-28 backend asks itself: its round goes to the client as is,
                        // its state inside ours.
                        Ok(ServerResult::InputRequiredResult(asked)) => {
                            Ok(ServerResult::InputRequiredResult(
                                self.pass_through(asked, &binding, ttl),
                            ))
                        }
                        other => other,
                    };
                    return Driven {
                        backend: running.backend.clone(),
                        result,
                    };
                }
                Turn::Asks(jobs) => jobs,
            };
            let mut asked = BTreeMap::new();
            for (i, job) in jobs.into_iter().enumerate() {
                if state::input_request(&job.request).is_none() {
                    let _ = job.reply.send(Err(ErrorData::invalid_request(
                        "this request cannot be asked of a 2026-07-28 client (InputRequired carries only sampling, elicitation and roots)",
                        None,
                    )));
                    continue;
                }
                asked.insert(format!("r{}-{}", round + 1, i + 1), job);
            }
            if asked.is_empty() {
                continue;
            }
            let backend = running.backend.clone();
            match self.park(running, asked, call, round + 1, binding.clone(), ttl) {
                Ok(result) => {
                    return Driven {
                        backend,
                        result: Ok(ServerResult::InputRequiredResult(result)),
                    };
                }
                Err((back, asked)) => {
                    running = back;
                    for (_, job) in asked {
                        let _ = job.reply.send(Err(ErrorData::internal_error(
                            format!(
                                "the gateway already holds {MAX_PARKED} calls waiting for 2026-07-28 clients' answers; try again later"
                            ),
                            None,
                        )));
                    }
                }
            }
        }
    }

    /// A new call id, for a call about to start.
    pub(super) fn new_call(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Parks the call with its round's questions; the `InputRequired` that
    /// asks them. The call expires after `ttl` unless a retry takes it. When
    /// [`MAX_PARKED`] calls wait already, the call and questions come back.
    #[allow(clippy::type_complexity)]
    fn park(
        self: &Arc<Self>,
        running: Running,
        asked: BTreeMap<String, RelayJob>,
        call: u64,
        round: u32,
        binding: Binding,
        ttl: Duration,
    ) -> Result<InputRequiredResult, (Running, BTreeMap<String, RelayJob>)> {
        let requests = state::input_requests(&asked);
        let sealed = state::Sealed {
            call,
            round,
            client: binding.client.clone(),
            digest: binding.digest.clone(),
            backend: None,
        };
        let request_state = state::seal(&self.codec, &sealed, ttl);
        let timer = CancellationToken::new();
        let waiting = Waiting {
            running,
            asked,
            round,
            binding,
            timer: timer.clone(),
        };
        {
            let mut table = self.lock();
            if table.len() >= MAX_PARKED {
                return Err((waiting.running, waiting.asked));
            }
            table.insert(call, waiting);
        }
        // Ends at the deadline or when a retry takes the call (`timer`).
        let table: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(ttl) => {
                    if let Some(table) = table.upgrade() {
                        table.expire(call, round, ttl);
                    }
                }
                _ = timer.cancelled() => {}
            }
        });
        Ok(InputRequiredResult::new(
            Some(requests),
            Some(request_state),
        ))
    }

    /// A 2026-07-28 backend's own round, for a 2026-07-28 client: its
    /// questions as they are, its state sealed inside ours (bound like ours).
    fn pass_through(
        &self,
        mut asked: InputRequiredResult,
        binding: &Binding,
        ttl: Duration,
    ) -> InputRequiredResult {
        let sealed = state::Sealed {
            call: 0,
            round: 0,
            client: binding.client.clone(),
            digest: binding.digest.clone(),
            backend: asked.request_state.take(),
        };
        asked.request_state = Some(state::seal(&self.codec, &sealed, ttl));
        asked
    }

    /// A retry: opens its state; for a parked call, hands the answers to the
    /// backend and returns the call to drive on, with its id and round; for a
    /// backend's own round, the backend's state to retry it with.
    pub(super) fn resume(
        &self,
        request_state: &str,
        responses: Option<&InputResponses>,
        retry: &Binding,
        ttl: Duration,
    ) -> Result<Resumed, ErrorData> {
        let sealed = state::open(&self.codec, request_state, retry, ttl)?;
        if sealed.call == 0 {
            return Ok(Resumed::Backend(sealed.backend));
        }
        let mut table = self.lock();
        let current = table
            .get(&sealed.call)
            .filter(|w| w.round == sealed.round && &w.binding == retry);
        let Some(waiting) = current else {
            return Err(state::invalid(
                "no call is waiting for this requestState: its round was answered already, or the call ended or expired"
                    .into(),
            ));
        };
        // All answers are checked before any is delivered: a bad retry leaves the call waiting.
        let answers = state::answers(&waiting.asked, responses)?;
        let Some(mut waiting) = table.remove(&sealed.call) else {
            return Err(state::invalid("the call is gone".into()));
        };
        drop(table);
        waiting.timer.cancel();
        for (key, answer) in answers {
            if let Some(job) = waiting.asked.remove(&key) {
                let _ = job.reply.send(Ok(answer));
            }
        }
        Ok(Resumed::Parked(waiting.running, sealed.call, sealed.round))
    }

    /// The call's round went unanswered for `ttl`: its questions get an
    /// error saying so and the backend request is cancelled with it.
    fn expire(&self, call: u64, round: u32, ttl: Duration) {
        let waiting = {
            let mut table = self.lock();
            match table.get(&call) {
                Some(w) if w.round == round => table.remove(&call),
                _ => None,
            }
        };
        let Some(waiting) = waiting else { return };
        self.expired.fetch_add(1, Ordering::Relaxed);
        let why = format!(
            "the 2026-07-28 client did not answer within {} (server.relay_timeout) after the gateway asked it with InputRequired; the call is cancelled",
            humantime::format_duration(ttl)
        );
        tracing::info!(call, round, "parked call expired");
        for (_, job) in waiting.asked {
            let _ = job
                .reply
                .send(Err(ErrorData::internal_error(why.clone(), None)));
        }
        waiting.running.stop(why);
    }
}
