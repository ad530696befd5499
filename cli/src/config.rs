//! `~/.kumactl/config`: the known control planes, the contexts that point at them, and which
//! context is active. Kuma's YAML layout, so a file written by one works with the other: fields
//! kumactl does not know (Kuma's `credentials`, API server `headers`, ...) are kept as they were
//! read and written back when the file is saved.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::Mapping;

/// Name of the control plane and context kumactl uses when there is no config file.
pub const DEFAULT_NAME: &str = "local";
/// Address of the built-in `local` control plane.
pub const DEFAULT_URL: &str = "http://localhost:5681";
/// The mesh used when neither `--mesh` nor the active context names one.
pub const DEFAULT_MESH: &str = "default";

/// The kumactl configuration file. Unlike the crates' `Config`s it keeps unknown fields instead of
/// refusing them (`deny_unknown_fields`): the file is shared with Kuma's kumactl, which writes
/// fields this one does not use, and its users must be able to keep it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    #[serde(default)]
    pub control_planes: Vec<ControlPlane>,
    #[serde(default)]
    pub contexts: Vec<Context>,
    /// Name of the active context; empty when none is.
    #[serde(default)]
    pub current_context: String,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

/// A control plane kumactl knows about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    pub name: String,
    pub coordinates: Coordinates,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

/// Where a control plane is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coordinates {
    pub api_server: ApiServer,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

/// The HTTP API of a control plane, and how kumactl proves who it is and checks the server.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    pub url: String,
    /// `tokens`: send `authConf.token` as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub auth_conf: std::collections::BTreeMap<String, String>,
    /// CA (PEM file) the server's certificate must be signed by.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_file: String,
    /// Client certificate and key (PEM files) presented over HTTPS.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_cert_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_key_file: String,
    /// Do not check the server's certificate at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verify: bool,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .field("auth_type", &self.auth_type)
            .field("ca_cert_file", &self.ca_cert_file)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// The user token, with `authType: tokens`.
    pub fn token(&self) -> Option<&str> {
        (self.auth_type == "tokens").then(|| self.auth_conf.get("token").map(String::as_str))?
    }
}

/// A named pairing of a control plane and defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub name: String,
    pub control_plane: String,
    #[serde(default)]
    pub defaults: ContextDefaults,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

/// Defaults a context applies to commands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextDefaults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mesh: String,
    /// Fields kumactl does not know, kept so that saving writes them back unchanged.
    #[serde(flatten)]
    pub extra: Mapping,
}

/// What can go wrong reading, changing or writing the config. A failed read or write says what to
/// do; its cause is the `source` (kumactl prints it after the message).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "could not read kumactl config {path} (make it readable, or pass another file with \
         --config-file)"
    )]
    Read { path: PathBuf, source: std::io::Error },
    #[error("kumactl config {path} is not valid: {reason}; fix or remove the file")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "could not write kumactl config {path} (make its directory writable, or pass another \
         file with --config-file)"
    )]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot find the home directory for ~/.kumactl/config; pass --config-file FILE")]
    NoHome,
    #[error(
        "Control Plane with name {0:?} already exists. Use --overwrite to replace an existing one."
    )]
    ControlPlaneExists(String),
    #[error("there is no Control Plane with name {0:?}; see kumactl config control-planes list")]
    UnknownControlPlane(String),
    #[error(
        "there is no active Control Plane; add one with \
         kumactl config control-planes add --name NAME --address URL"
    )]
    NoActiveControlPlane,
}

impl Default for Config {
    /// The built-in configuration: control plane `local` at `http://localhost:5681`.
    fn default() -> Config {
        Config {
            control_planes: vec![ControlPlane::new(DEFAULT_NAME, DEFAULT_URL)],
            contexts: vec![Context::new(DEFAULT_NAME)],
            current_context: DEFAULT_NAME.to_string(),
            extra: Mapping::new(),
        }
    }
}

impl ControlPlane {
    pub fn new(name: &str, url: &str) -> ControlPlane {
        ControlPlane {
            name: name.to_string(),
            coordinates: Coordinates {
                api_server: ApiServer { url: url.to_string(), ..ApiServer::default() },
                extra: Mapping::new(),
            },
            extra: Mapping::new(),
        }
    }

    /// The API server URL.
    pub fn url(&self) -> &str {
        &self.coordinates.api_server.url
    }
}

impl Context {
    /// A context for the control plane of the same name, with the default mesh.
    pub fn new(control_plane: &str) -> Context {
        Context {
            name: control_plane.to_string(),
            control_plane: control_plane.to_string(),
            defaults: ContextDefaults { mesh: DEFAULT_MESH.to_string(), extra: Mapping::new() },
            extra: Mapping::new(),
        }
    }
}

impl Config {
    /// `~/.kumactl/config`.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".kumactl/config")),
            _ => Err(ConfigError::NoHome),
        }
    }

    /// Reads the file at `path`, or returns the built-in default when there is none.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        Config::from_yaml(&text)
            .map_err(|reason| ConfigError::Invalid { path: path.to_path_buf(), reason })
    }

    /// Parses and validates the YAML form; an empty document is the empty config.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        let config: Config = if text.trim().is_empty() {
            Config {
                control_planes: vec![],
                contexts: vec![],
                current_context: String::new(),
                extra: Mapping::new(),
            }
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    /// The YAML form, as written to the file and printed by `config view`.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("the config is plain data and always serializes")
    }

    /// Writes the file (and its directory), readable only by the user; replaces it atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write_err = |source| ConfigError::Write { path: path.to_path_buf(), source };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(write_err)?;
        let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(write_err)?;
        file.write_all(self.to_yaml().as_bytes()).map_err(write_err)?;
        file.as_file().sync_all().map_err(write_err)?;
        file.persist(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }

    /// Checks that names are unique and every reference points at something that exists.
    pub fn validate(&self) -> Result<(), String> {
        for (i, cp) in self.control_planes.iter().enumerate() {
            if cp.name.is_empty() {
                return Err(format!("controlPlanes[{i}].name is empty"));
            }
            if self.control_planes[..i].iter().any(|other| other.name == cp.name) {
                return Err(format!("Control Plane {:?} is listed twice", cp.name));
            }
        }
        for (i, ctx) in self.contexts.iter().enumerate() {
            if self.contexts[..i].iter().any(|other| other.name == ctx.name) {
                return Err(format!("context {:?} is listed twice", ctx.name));
            }
            if self.control_plane(&ctx.control_plane).is_none() {
                return Err(format!(
                    "context {:?} refers to an unknown Control Plane {:?}",
                    ctx.name, ctx.control_plane
                ));
            }
        }
        if !self.current_context.is_empty() && self.context(&self.current_context).is_none() {
            return Err(format!(
                "currentContext {:?} is not a known context",
                self.current_context
            ));
        }
        Ok(())
    }

    fn control_plane(&self, name: &str) -> Option<&ControlPlane> {
        self.control_planes.iter().find(|cp| cp.name == name)
    }

    fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The active context, if any.
    pub fn current(&self) -> Option<&Context> {
        self.context(&self.current_context)
    }

    /// The control plane of the active context.
    pub fn current_control_plane(&self) -> Result<&ControlPlane, ConfigError> {
        self.current()
            .and_then(|ctx| self.control_plane(&ctx.control_plane))
            .ok_or(ConfigError::NoActiveControlPlane)
    }

    /// Every control plane with whether it is the active one.
    pub fn control_planes(&self) -> impl Iterator<Item = (&ControlPlane, bool)> {
        let active = self.current().map(|ctx| ctx.control_plane.as_str());
        self.control_planes.iter().map(move |cp| (cp, Some(cp.name.as_str()) == active))
    }

    /// Adds a control plane and a context of the same name, and makes that context active.
    /// A name already in use is refused unless `overwrite`.
    pub fn add_control_plane(
        &mut self,
        cp: ControlPlane,
        overwrite: bool,
    ) -> Result<(), ConfigError> {
        let name = cp.name.clone();
        let existing = self.control_planes.iter().position(|c| c.name == name);
        let context_exists = self.context(&name).is_some();
        if (existing.is_some() || context_exists) && !overwrite {
            return Err(ConfigError::ControlPlaneExists(name));
        }
        match existing {
            Some(i) => self.control_planes[i] = cp,
            None => self.control_planes.push(cp),
        }
        let context = Context::new(&name);
        match self.contexts.iter().position(|c| c.name == name) {
            Some(i) => self.contexts[i] = context,
            None => self.contexts.push(context),
        }
        self.current_context = name;
        Ok(())
    }

    /// Makes the context named `name` active.
    pub fn switch(&mut self, name: &str) -> Result<(), ConfigError> {
        if self.context(name).is_none() {
            return Err(ConfigError::UnknownControlPlane(name.to_string()));
        }
        self.current_context = name.to_string();
        Ok(())
    }

    /// Removes a control plane and every context that points at it. When the active context
    /// goes, no context is active until `switch` or `add`.
    pub fn remove_control_plane(&mut self, name: &str) -> Result<(), ConfigError> {
        if self.control_plane(name).is_none() {
            return Err(ConfigError::UnknownControlPlane(name.to_string()));
        }
        self.control_planes.retain(|cp| cp.name != name);
        self.contexts.retain(|ctx| ctx.control_plane != name);
        if self.current().is_none() {
            self.current_context.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
