//! Envoy's node id for a dataplane: `<mesh>.<name>` (mesh names never contain '.').

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub mesh: String,
    pub name: String,
}

impl NodeId {
    pub fn new(mesh: &str, name: &str) -> NodeId {
        NodeId { mesh: mesh.to_string(), name: name.to_string() }
    }

    /// Parses `<mesh>.<name>`; the name may itself contain dots.
    pub fn parse(id: &str) -> Result<NodeId, String> {
        match id.split_once('.') {
            Some((mesh, name)) if !mesh.is_empty() && !name.is_empty() => {
                Ok(NodeId::new(mesh, name))
            }
            _ => Err(format!(
                "node id {id:?} is not of the form <mesh>.<name>: start Envoy with kuma-dp, whose \
                 bootstrap sets it"
            )),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.mesh, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_splits_at_the_first_dot() {
        assert_eq!(NodeId::parse("default.web.ns").unwrap(), NodeId::new("default", "web.ns"));
        assert!(NodeId::parse("nodot").is_err());
        assert!(NodeId::parse(".x").is_err());
        assert!(NodeId::parse("x.").is_err());
    }
}
