//! Why the injector refuses a pod.

/// A pod the injector must refuse: the webhook turns it into a denial carrying this message, so
/// it says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The sidecar's traffic is exempt from redirection by its uid, so an app container with the
    /// same uid would bypass the mesh unnoticed.
    #[error(
        "container {container:?} runs as uid {uid}, the uid of the kuma-sidecar, so its traffic \
         would bypass the mesh: run it as another user, or keep the pod out of the mesh with \
         the annotation kuma.io/sidecar-injection: disabled"
    )]
    RunsAsSidecarUid { container: String, uid: i64 },
}
