//! Each mesh's CA as xDS needs it: a `builtin` CA is generated once (by the leader, through the
//! store) and kept as a Secret; a `provided` CA comes from a file, inline PEM or a Secret named in
//! the Mesh. Private keys are read here and handed to the CA; they are never logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use kuma_ca::{MeshCa, BUILTIN_CA_VALIDITY};
use kuma_model::{CaDataSource, MeshSpec, ResourceKey, ResourceType, SecretSpec, Spec, Violation};
use kuma_store::{ResourceStore, StoreError};
use tracing::info;

/// Name of the Secret holding a builtin CA (certificate then key, PEM) of `backend` in `mesh`.
pub fn builtin_ca_secret_name(mesh: &str, backend: &str) -> String {
    format!("{mesh}.ca-builtin-{backend}")
}

/// Creates the builtin CA of every mesh that enables one and has none yet. Idempotent: the CA is
/// one Secret created with create-if-absent, so a second caller (after a leader change) finds it
/// and stops. Returns how many CAs it created.
pub async fn ensure_builtin_cas(store: &dyn ResourceStore) -> Result<usize, StoreError> {
    let mut created = 0;
    for mesh in &kuma_store::list_all(store, ResourceType::Mesh, None).await? {
        let Some(spec) = mesh.spec.as_mesh() else { continue };
        let Some((backend, kind)) = spec.enabled_ca() else { continue };
        if kind != "builtin" {
            continue;
        }
        let name = builtin_ca_secret_name(&mesh.key.name, &backend);
        let key = ResourceKey::new(ResourceType::Secret, &mesh.key.name, &name);
        match store.get(&key).await {
            Ok(_) => continue,
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let ca = MeshCa::generate(&mesh.key.name, BUILTIN_CA_VALIDITY).map_err(|e| {
            StoreError::Internal { reason: format!("could not generate a mesh CA: {e}") }
        })?;
        let bundle = format!("{}{}", ca.cert_pem(), ca.key_pem());
        match store.create(key, Spec::Secret(SecretSpec::from_bytes(bundle.as_bytes()))).await {
            Ok(_) => {
                info!(mesh = %mesh.key.name, backend = %backend, "generated the mesh's builtin CA");
                created += 1;
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

fn read_source(
    source: Option<&CaDataSource>,
    secrets: &BTreeMap<String, Arc<SecretSpec>>,
    what: &str,
) -> Result<String, String> {
    let source = source.ok_or_else(|| format!("the provided CA has no {what}"))?;
    if let Some(inline) = &source.inline {
        return Ok(inline.clone());
    }
    if let Some(file) = &source.file {
        return std::fs::read_to_string(file)
            .map_err(|e| format!("could not read the provided CA {what} from {file}: {e}"));
    }
    if let Some(secret) = &source.secret {
        return secrets
            .get(secret)
            .and_then(|s| s.text())
            .ok_or_else(|| format!("the provided CA {what} Secret {secret:?} does not exist"));
    }
    Err(format!("the provided CA {what} names no source"))
}

/// The CA of a mesh: `Ok(None)` when mTLS is off, an error (for logs and status) when it is on but
/// the CA is not there (yet) or does not load.
pub fn resolve(
    mesh: &str,
    spec: &MeshSpec,
    secrets: &BTreeMap<String, Arc<SecretSpec>>,
) -> Result<Option<MeshCa>, String> {
    let Some((backend, kind)) = spec.enabled_ca() else { return Ok(None) };
    let (cert, key) = match kind.as_str() {
        "builtin" => {
            let name = builtin_ca_secret_name(mesh, &backend);
            let bundle = secrets
                .get(&name)
                .and_then(|s| s.text())
                .ok_or_else(|| format!("the builtin CA Secret {name:?} is not generated yet"))?;
            kuma_ca::split_pem_bundle(&bundle)
        }
        "provided" => {
            let conf = spec.enabled_ca_backend().and_then(|b| b.conf.as_ref());
            let cert = read_source(conf.and_then(|c| c.cert.as_ref()), secrets, "cert")?;
            let key = read_source(conf.and_then(|c| c.key.as_ref()), secrets, "key")?;
            (cert, key)
        }
        other => return Err(format!("CA backend type {other:?} is not supported")),
    };
    MeshCa::from_pem(&cert, &key)
        .map(Some)
        .map_err(|e| format!("the CA of mesh {mesh} does not load: {e}"))
}

/// Violations of a Mesh's provided CAs whose certificate and key are given inline or as files:
/// they must load as a CA now, not fail later in every dataplane's config. CAs in Secrets are
/// checked when used (the Secret may be written after the Mesh).
pub fn provided_ca_violations(spec: &MeshSpec) -> Vec<Violation> {
    let Some(mtls) = &spec.mtls else { return Vec::new() };
    let no_secrets = BTreeMap::new();
    let mut violations = Vec::new();
    for (i, backend) in mtls.backends.iter().enumerate() {
        let Some(conf) = backend.conf.as_ref().filter(|_| backend.kind == "provided") else {
            continue;
        };
        let from_secret = |s: Option<&CaDataSource>| s.is_some_and(|s| s.secret.is_some());
        if from_secret(conf.cert.as_ref()) || from_secret(conf.key.as_ref()) {
            continue;
        }
        let loaded = read_source(conf.cert.as_ref(), &no_secrets, "cert").and_then(|cert| {
            let key = read_source(conf.key.as_ref(), &no_secrets, "key")?;
            MeshCa::from_pem(&cert, &key).map_err(|e| format!("the provided CA does not load: {e}"))
        });
        if let Err(message) = loaded {
            violations.push(Violation::new(format!("mtls.backends[{i}].conf"), message));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_splits_into_certificate_and_key() {
        let ca = MeshCa::generate("m", BUILTIN_CA_VALIDITY).unwrap();
        let (cert, key) = kuma_ca::split_pem_bundle(&format!("{}{}", ca.cert_pem(), ca.key_pem()));
        assert_eq!(MeshCa::from_pem(&cert, &key).unwrap(), ca);
    }

    #[test]
    fn a_provided_ca_is_read_inline_and_a_missing_builtin_one_is_explained() {
        let ca = MeshCa::generate("m", BUILTIN_CA_VALIDITY).unwrap();
        let yaml = format!(
            "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        inline: |\n{}      key:\n        inline: |\n{}",
            indent(ca.cert_pem()),
            indent(ca.key_pem())
        );
        let spec: MeshSpec = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(resolve("m", &spec, &BTreeMap::new()).unwrap(), Some(ca));

        let builtin: MeshSpec = serde_yaml::from_str(
            "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
        )
        .unwrap();
        let err = resolve("m", &builtin, &BTreeMap::new()).unwrap_err();
        assert!(err.contains("m.ca-builtin-ca-1"), "{err}");
        assert_eq!(resolve("m", &MeshSpec::default(), &BTreeMap::new()).unwrap(), None);
    }

    #[test]
    fn a_provided_ca_that_does_not_load_is_a_violation_at_its_backend() {
        let spec: MeshSpec = serde_yaml::from_str(
            "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        inline: nope\n      key:\n        file: /nonexistent/ca.key\n",
        )
        .unwrap();
        let violations = provided_ca_violations(&spec);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "mtls.backends[0].conf");
        assert!(violations[0].message.contains("/nonexistent/ca.key"), "{violations:?}");
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("          {l}\n")).collect()
    }
}
