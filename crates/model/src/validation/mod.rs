//! Validation: every violation is collected with its field path, in Kuma's path syntax
//! (`networking.inbound[0].tags["service"]`), so one 400 response tells the user everything.

mod dataplane;
mod mesh;
mod policies;
mod tags;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::mesh::MeshSpec;
use crate::parse::ResourceInput;
use crate::registry::ResourceType;
use crate::resource::ResourceKey;

/// One broken rule: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation { field: field.into(), message: message.into() }
    }
}

/// Every violation found in one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub violations: Vec<Violation>,
}

impl ValidationError {
    pub fn new(violations: Vec<Violation>) -> ValidationError {
        ValidationError { violations }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("resource is not valid")?;
        for v in &self.violations {
            write!(f, "; {}: {}", v.field, v.message)?;
        }
        Ok(())
    }
}

/// What validation may look at beyond the resource itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationContext<'a> {
    /// The mesh the resource belongs to, when it exists; backend references are checked against it.
    pub mesh: Option<&'a MeshSpec>,
}

/// Validates a submitted resource: its name and mesh, then its spec.
pub fn validate(input: &ResourceInput, ctx: &ValidationContext<'_>) -> Result<(), ValidationError> {
    let mut report = Report::default();
    report.violations.extend(validate_meta(&input.key));
    input.spec.validate_into(ctx, &mut report);
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::new(report.violations))
    }
}

const NAME_MAX: usize = 253;

/// Problems with a name. Mesh names may not contain '.', which separates the mesh from the
/// dataplane in an Envoy node id (`<mesh>.<name>`).
fn name_problem(name: &str, dots: bool) -> Option<String> {
    if name.is_empty() {
        return Some("cannot be empty".into());
    }
    if name.len() > NAME_MAX {
        return Some(format!("must be at most {NAME_MAX} characters long"));
    }
    let ok = name.chars().all(|c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_') || (dots && c == '.')
    });
    let allowed = if dots { "'-', '_' and '.'" } else { "'-' and '_'" };
    (!ok).then(|| format!("{name:?} is invalid: use only lower case letters, digits, {allowed}"))
}

/// Checks the name and mesh of a key.
pub fn validate_meta(key: &ResourceKey) -> Vec<Violation> {
    let mut violations = Vec::new();
    let is_mesh = key.resource_type == ResourceType::Mesh;
    if let Some(problem) = name_problem(&key.name, !is_mesh) {
        violations.push(Violation::new("name", problem));
    }
    if let Some(problem) = key.mesh.as_deref().and_then(|m| name_problem(m, false)) {
        violations.push(Violation::new("mesh", problem));
    }
    violations
}

/// A field path in Kuma's syntax.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub fn root() -> Path {
        Path::default()
    }

    pub fn field(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k:?}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Collects violations.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn add(&mut self, path: &Path, message: impl Into<String>) {
        self.violations.push(Violation::new(path.0.clone(), message));
    }

    fn port(&mut self, path: &Path, port: Option<u32>, required: bool) {
        match port {
            None if required => self.add(path, "port is required"),
            Some(p) if !(1..=65535).contains(&p) => {
                self.add(path, format!("port {p} is out of range 1-65535"))
            }
            _ => {}
        }
    }

    fn ip(&mut self, path: &Path, address: Option<&str>) {
        if let Some(a) = address {
            if a.parse::<IpAddr>().is_err() {
                self.add(
                    path,
                    format!("{a:?} is not a valid IP address (host names are not allowed)"),
                );
            }
        }
    }

    fn positive_duration(&mut self, path: &Path, value: Option<&str>) {
        match value {
            None => self.add(path, "has to be set"),
            Some(v) => match parse_duration(v) {
                Err(e) => self.add(path, e.to_string()),
                Ok(d) if d.is_zero() => self.add(path, "has to be greater than 0"),
                Ok(_) => {}
            },
        }
    }

    fn positive(&mut self, path: &Path, value: Option<u32>) {
        match value {
            None => self.add(path, "has to be set"),
            Some(0) => self.add(path, "has to be greater than 0"),
            Some(_) => {}
        }
    }

    fn unique_names<'n>(&mut self, base: &Path, names: impl Iterator<Item = &'n str>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.enumerate() {
            let path = base.index(i).field("name");
            if name.is_empty() {
                self.add(&path, "cannot be empty");
            } else if let Some(first) = seen.get(name) {
                self.add(&path, format!("{name:?} is already used by {}", base.index(*first)));
            } else {
                seen.insert(name, i);
            }
        }
    }

    fn reference(&mut self, path: &Path, name: Option<&str>, known: &[&str], what: &str) {
        if let Some(name) = name {
            if !known.contains(&name) {
                let choices =
                    if known.is_empty() { "none are defined".into() } else { known.join(", ") };
                self.add(path, format!("{what} {name:?} is not defined; defined: {choices}"));
            }
        }
    }
}

/// Rules a spec type applies to itself.
pub(crate) trait Validate {
    fn validate(&self, ctx: &ValidationContext<'_>, report: &mut Report);
}
