//! The client-facing side: HTTP (and stdio) serving of one MCP session per client.

pub mod http;
mod session;
pub mod stdio;

pub use session::FrontSession;
