//! `gateway.toml`: the model, and loading with every error reported at once.

mod audit;
mod auth;
mod backend;
mod diff;
mod filter;
mod interpolate;
mod jobs;
mod load;
mod messaging;
mod model;
pub mod redact;
mod server;
mod sessions;

pub use audit::{AuditConfig, LocalStore, Production};
pub use auth::unauthenticated_exposure;
pub use backend::join as exposed_name;
pub use diff::{BackendDiff, diff_backends, keep_fixed_settings, same_connection};
pub use jobs::{JobStoreConfig, JobsConfig, OnInterrupt};
pub use load::{ConfigError, ConfigErrors, load_file, parse_str};
pub use model::*;
