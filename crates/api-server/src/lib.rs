//! The HTTP API of kuma-cp (default port 5681): Kuma's REST paths for every registered type,
//! paging, `dataplanes+insights`, Kuma's error body, and an OpenAPI document generated from the
//! model's types.
//!
//! It reaches data only through the `ResourceStore` trait and must never depend on a concrete
//! store backend; `node` decides which store it gets.

mod config;
mod error;
mod openapi;
mod overview;
mod policies;
mod query;
mod resources;
mod server;

pub use config::ApiServerConfig;
pub use error::ApiError;
pub use server::{is_from_loopback, ApiServer, ExtraValidation, ServerInfo};
