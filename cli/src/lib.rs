//! kumactl: the user CLI of kuma-rs. It owns the command line (`apply`, `get`, `delete`,
//! `export`, `inspect`, `generate`, `install`, `raft`, `config`, `version`, `completion`), the
//! `~/.kumactl/config` file, the REST client, mustache templating of applied files, the
//! table/YAML/JSON printers, and the Kubernetes install manifests (`install crds`,
//! `install control-plane`), built as plain JSON values: kumactl never links kube.
//!
//! kumactl is only a client of the control plane's HTTP API. It must never link a store backend
//! (RocksDB, Raft, Kubernetes, Postgres) or any server crate: its only project dependency is
//! `kuma-model`, for the type registry, parsing and the REST shapes it shares with the server.

mod apply;
mod args;
mod cells;
mod client;
mod cluster;
mod config;
mod delete;
mod error;
mod export;
mod generate;
mod get;
mod inspect;
mod inspect_policies;
mod install;
mod kumactl;
mod output;
mod raft_snapshot;
mod table;
mod terminal;
mod watch;

pub use args::{Args, Command};
pub use client::{ApiClient, ClientError};
pub use config::{Config, ConfigError};
pub use error::CliError;
pub use kuma_model::{render_template, TemplateError};
pub use kumactl::{run, run_on, Kumactl};
pub use table::Table;
pub use terminal::Terminal;
