//! The client-facing side: HTTP (and stdio) serving of one MCP session per client.
//!
//! HTTP requests go through [`stack`] (trace, metrics, origin, auth, body,
//! limits; one layer per file in [`layers`]) to [`routes`], and MCP messages
//! from there to rmcp and one [`FrontSession`] per client. [`policy`] holds
//! the auth and limits in force; [`reject`] turns refusals into responses.

mod audit;
pub mod http;
pub mod layers;
pub mod policy;
pub mod reject;
mod request;
pub mod routes;
mod session;
pub mod stack;
pub mod stdio;

pub use policy::Policy;
pub use session::FrontSession;
