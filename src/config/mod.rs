//! `gateway.toml`: the model, and loading with every error reported at once.

mod audit;
mod diff;
mod jobs;
mod load;
mod messaging;
mod model;
pub mod redact;
mod sessions;

pub use audit::{AuditConfig, LocalStore, Production};
pub use diff::{BackendDiff, diff_backends, keep_fixed_settings, same_connection};
pub use jobs::{JobStoreConfig, JobsConfig, OnInterrupt};
pub use load::{
    ConfigError, ConfigErrors, join as exposed_name, load_file, parse_str, unauthenticated_exposure,
};
pub use model::*;
