//! The HTTP API driven through its axum Router, without a socket.

mod access;
mod config_dumps;
mod gui;
mod support;

mod paging;
mod policies;
mod properties;
mod resources;
mod robustness;
mod secrets;
mod validation;
