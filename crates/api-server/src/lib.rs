//! The HTTP API of kuma-cp (default port 5681): Kuma's REST paths for every registered type,
//! paging, `dataplanes+insights`, Kuma's error body, and an OpenAPI document generated from the
//! model's types; and the web GUI at `/gui`, a page that reads this API from the browser.
//!
//! Every request is authenticated (user token, client certificate, or loopback as admin) and
//! writes need the admin role; see `access`. Secret contents are served only to admins who list
//! secrets with `include=data` (backups, `kumactl export --include-secrets`), audit-logged. A connected dataplane's Envoy config dump
//! (`/meshes/{mesh}/dataplanes/{name}/xds`, admin only) comes from kuma-cp through
//! [`ConfigDumps`].
//!
//! It reaches data only through the `ResourceStore` trait and must never depend on a concrete
//! store backend; `node` decides which store it gets.

mod access;
mod config;
mod config_dumps;
mod error;
mod gui;
mod metrics;
mod openapi;
mod overview;
mod policies;
mod query;
mod resources;
mod server;

pub use access::{is_from_loopback, Identity, Role, UserTokens, ADMIN_GROUP};
pub use config::{ApiServerConfig, AuthConfig, HttpConfig, HttpsConfig};
pub use config_dumps::{ConfigDumps, DumpError, DumpRequest, FORWARDED_FROM};
pub use error::ApiError;
pub use gui::{
    size_in_bytes as gui_size_in_bytes, CONTENT_SECURITY_POLICY as GUI_CONTENT_SECURITY_POLICY,
    GUI_PATH,
};
pub use server::{ApiListeners, ApiServer, ExtraValidation, HttpsListener, ServerInfo};
