//! `gateway.toml`: the model, and loading with every error reported at once.

mod audit;
mod load;
mod messaging;
mod model;

pub use audit::{AuditConfig, LocalStore, Production};
pub use load::{ConfigError, ConfigErrors, join as exposed_name, load_file, parse_str};
pub use model::*;
