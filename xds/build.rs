//! Envoy's API descriptors for reading ProxyTemplate raw resources (`src/raw_resource.rs`) come
//! from the envoy-types dependency, which ships them beside its generated code: this finds that
//! crate's sources (the version `Cargo.lock` resolved, in Cargo's registry) and copies the file
//! into `OUT_DIR` at build time. It is never kept in this repository.

use std::path::{Path, PathBuf};

/// Where envoy-types keeps the encoded `FileDescriptorSet` of the types it generates.
const DESCRIPTORS: &str = "src/generated/types.bin";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let lock = manifest_dir.join("../Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", lock.display());
    let version = resolved_version(&lock, "envoy-types");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .unwrap_or_else(|| panic!("neither CARGO_HOME nor HOME is set"));
    let registry = cargo_home.join("registry/src");
    let source = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(format!("envoy-types-{version}")).join(DESCRIPTORS))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "envoy-types {version} with {DESCRIPTORS} is not in {}: build with Cargo's \
                 registry (not vendored sources)",
                registry.display()
            )
        });
    let target = PathBuf::from(env("OUT_DIR")).join("envoy-descriptors.bin");
    std::fs::copy(&source, &target)
        .unwrap_or_else(|e| panic!("could not copy {}: {e}", source.display()));
    println!("cargo:rerun-if-changed={}", source.display());
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The version of package `name` in `Cargo.lock`.
fn resolved_version(lock: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(lock)
        .unwrap_or_else(|e| panic!("could not read {}: {e}", lock.display()));
    let entry = format!("name = \"{name}\"\nversion = \"");
    let at = text.find(&entry).unwrap_or_else(|| panic!("{name} is not in {}", lock.display()));
    let rest = &text[at + entry.len()..];
    rest[..rest.find('"').expect("a quoted version")].to_string()
}
