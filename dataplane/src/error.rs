//! `KumaDpError`: why `kuma-dp run` stopped. Each message is one line that says what was wrong,
//! with the value, and what to do. A failure with a cause (an I/O error) says what failed and, in
//! parentheses, what to do, and keeps the cause as its `source`: kuma-dp prints the chain once,
//! `Error: could not start Envoy /x/envoy (check --binary-path): Permission denied (os error 13)`
//! ([`KumaDpError::with_causes`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::admin_port::AdminPortError;
use crate::supervisor::EnvoyExit;

/// A failed `kuma-dp run`.
#[derive(Debug, thiserror::Error)]
pub enum KumaDpError {
    #[error(
        "no envoy binary found: looked for {sibling} (next to kuma-dp) and for envoy on PATH \
         ({path}); install Envoy or point --binary-path (or KUMA_DATAPLANE_RUNTIME_BINARY_PATH) \
         at the envoy binary"
    )]
    NoEnvoy { sibling: String, path: String },
    #[error(
        "--binary-path {path}: {reason}; point --binary-path (or \
         KUMA_DATAPLANE_RUNTIME_BINARY_PATH) at an executable envoy binary"
    )]
    BadEnvoyPath { path: PathBuf, reason: String },
    #[error(
        "could not create the config dir {path} (pass a writable --config-dir or \
         KUMA_DATAPLANE_RUNTIME_CONFIG_DIR)"
    )]
    ConfigDir { path: PathBuf, source: std::io::Error },
    #[error(
        "could not write the Envoy bootstrap to {path} (pass a writable --config-dir or \
         KUMA_DATAPLANE_RUNTIME_CONFIG_DIR)"
    )]
    WriteBootstrap { path: PathBuf, source: std::io::Error },
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
    #[error("the Control Plane's CA certificate is not a PEM CA certificate: {0}")]
    BadCaCert(String),
    #[error(
        "the Control Plane at {url} presented a certificate that is not signed by the CA given \
         with --ca-cert-file or --ca-cert ({reason}); pass the CA that kumactl inspect \
         control-plane-ca prints"
    )]
    UntrustedServer { url: String, reason: String },
    #[error(
        "the Control Plane at {url} speaks TLS: use https://{host_port} (with --ca-cert-file or \
         --ca-cert) in --bootstrap-server-url (or KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL)"
    )]
    SpeaksTls { url: String, host_port: String },
    #[error(
        "no Control Plane answered at {urls} after retrying for {} (last error: {last_error}); \
         check that kuma-cp is running there, or set KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL \
         (or --bootstrap-server-url) to its bootstrap server, e.g. https://localhost:5682",
        format_duration(*waited)
    )]
    Unreachable { urls: String, last_error: String, waited: Duration },
    #[error(
        "Dataplane {mesh}/{name} is not registered at {url}: create it first with kumactl apply \
         (retried for {}{})",
        format_duration(*waited),
        answer_of(mesh, name, details)
    )]
    NotRegistered { mesh: String, name: String, url: String, details: String, waited: Duration },
    #[error(
        "the Control Plane at {url} refused the bootstrap request of Dataplane {mesh}/{name} \
         with {status}: {details}"
    )]
    Rejected { url: String, mesh: String, name: String, status: u16, details: String },
    #[error("could not install the signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("could not start Envoy {path} (check --binary-path)")]
    SpawnEnvoy { path: PathBuf, source: std::io::Error },
    #[error("could not wait for Envoy")]
    Supervise(#[source] std::io::Error),
    #[error("Envoy {exit} (its log is above); the bootstrap it was given is {bootstrap}")]
    EnvoyFailed { exit: EnvoyExit, bootstrap: PathBuf },
    #[error(transparent)]
    NoAdminPort(#[from] AdminPortError),
    #[error(
        "Envoy {exit}: another process took its admin port 127.0.0.1:{port} after kuma-dp found \
         it free; start kuma-dp again (a range picks another free port) or pass a free port with \
         --admin-port (or KUMA_DATAPLANE_ADMIN_PORT)"
    )]
    AdminPortTaken { exit: EnvoyExit, port: u16 },
}

impl KumaDpError {
    /// The process exit code: Envoy's own status when Envoy failed, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            KumaDpError::EnvoyFailed { exit, .. } | KumaDpError::AdminPortTaken { exit, .. } => {
                exit.code()
            }
            _ => 1,
        }
    }

    /// The message and then each cause once, `what failed (what to do): cause`: the line kuma-dp
    /// prints after `Error: `.
    pub fn with_causes(&self) -> impl std::fmt::Display + '_ {
        with_causes(self)
    }
}

/// An error and then each of its causes once, `a: b: c`, as `{:#}` prints an `anyhow::Error`.
pub(crate) fn with_causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl std::fmt::Display + 'a {
    struct WithCauses<'a>(&'a (dyn std::error::Error + 'static));
    impl std::fmt::Display for WithCauses<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)?;
            let mut cause = self.0.source();
            while let Some(e) = cause {
                write!(f, ": {e}")?;
                cause = e.source();
            }
            Ok(())
        }
    }
    WithCauses(error)
}

/// What the 404 said, unless it is Kuma's own message about this Dataplane, which the error
/// already says; a 404 from something else (a wrong port) is worth showing.
fn answer_of(mesh: &str, name: &str, details: &str) -> String {
    if details.contains(&format!("{mesh}/{name}")) {
        String::new()
    } else {
        format!("; the answer was: {details}")
    }
}

/// `500ms`, `1s`, `1.5s`, `5m`, `1h`: how Kuma's durations are written.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if ms.is_multiple_of(1000) {
        if secs.is_multiple_of(3600) {
            return format!("{}h", secs / 3600);
        }
        if secs.is_multiple_of(60) {
            return format!("{}m", secs / 60);
        }
        return format!("{secs}s");
    }
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the cause printed twice when it was in the message and the `source` too.
    #[test]
    fn a_cause_is_printed_once_after_what_to_do() {
        let denied = || std::io::Error::from_raw_os_error(13);
        let errors = [
            (
                KumaDpError::ConfigDir { path: "/c".into(), source: denied() },
                "could not create the config dir /c (pass a writable --config-dir or \
                 KUMA_DATAPLANE_RUNTIME_CONFIG_DIR)",
            ),
            (
                KumaDpError::WriteBootstrap { path: "/c/b.yaml".into(), source: denied() },
                "could not write the Envoy bootstrap to /c/b.yaml (pass a writable --config-dir \
                 or KUMA_DATAPLANE_RUNTIME_CONFIG_DIR)",
            ),
            (
                KumaDpError::SpawnEnvoy { path: "/x/envoy".into(), source: denied() },
                "could not start Envoy /x/envoy (check --binary-path)",
            ),
            (KumaDpError::Signals(denied()), "could not install the signal handlers"),
            (KumaDpError::Supervise(denied()), "could not wait for Envoy"),
        ];
        for (e, message) in errors {
            assert_eq!(e.to_string(), message);
            assert_eq!(
                e.with_causes().to_string(),
                format!("{message}: Permission denied (os error 13)")
            );
        }
        let e =
            crate::AccessLogStreamerError::Bind { path: "/tmp/s.sock".into(), source: denied() };
        assert_eq!(
            with_causes(&e).to_string(),
            "cannot listen for Envoy's access logs on /tmp/s.sock (remove the file if no other \
             kuma-dp of this dataplane runs): Permission denied (os error 13)"
        );
    }

    #[test]
    fn durations_are_written_like_the_flags() {
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn not_registered_repeats_only_an_answer_that_is_not_kumas() {
        let error = |details: &str| KumaDpError::NotRegistered {
            mesh: "default".into(),
            name: "redis-1".into(),
            url: "http://cp:5682".into(),
            details: details.into(),
            waited: Duration::from_secs(300),
        };
        assert_eq!(
            error("Dataplane default/redis-1 is not registered: create it first").to_string(),
            "Dataplane default/redis-1 is not registered at http://cp:5682: create it first with \
             kumactl apply (retried for 5m)"
        );
        assert!(error("404 page not found")
            .to_string()
            .ends_with("; the answer was: 404 page not found)"));
    }

    #[test]
    fn envoy_failures_exit_with_envoys_status_and_the_rest_with_1() {
        let failed = KumaDpError::EnvoyFailed {
            exit: EnvoyExit::Signaled(9),
            bootstrap: PathBuf::from("/tmp/b.yaml"),
        };
        assert_eq!(failed.exit_code(), 137);
        let taken = KumaDpError::AdminPortTaken { exit: EnvoyExit::Exited(1), port: 30417 };
        assert_eq!(taken.exit_code(), 1);
        assert_eq!(
            taken.to_string(),
            "Envoy exited with status 1: another process took its admin port 127.0.0.1:30417 \
             after kuma-dp found it free; start kuma-dp again (a range picks another free port) \
             or pass a free port with --admin-port (or KUMA_DATAPLANE_ADMIN_PORT)"
        );
        assert_eq!(KumaDpError::HttpClient("x".into()).exit_code(), 1);
    }
}
