//! `InjectorConfig`: everything the injected containers are made from.

/// CPU and memory requests and limits of an injected container, as Kubernetes quantities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_cpu: String,
    pub limits_memory: String,
}

/// What the injector puts into a pod. `Default` is Kuma's: sidecar uid/gid 5678, Envoy admin on
/// 9901, outbound redirected to 15001 and inbound to 15006, the bootstrap server of the
/// `kuma-control-plane` Service in `kuma-system`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorConfig {
    /// Image of the `kuma-sidecar` container (kuma-dp and Envoy).
    pub sidecar_image: String,
    /// Image of the `kuma-init` container (kumactl, which installs the iptables redirection).
    pub init_image: String,
    /// Where kuma-dp fetches its bootstrap: `KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL`.
    pub control_plane_url: String,
    /// The CA (PEM) the control plane's certificate is signed by, passed inline to kuma-dp as
    /// `KUMA_CONTROL_PLANE_CA_CERT`; empty leaves the variable out.
    pub control_plane_ca_pem: String,
    /// Pods of this namespace (the control plane's own) are never injected.
    pub system_namespace: String,
    /// The uid and gid the sidecar runs as; the redirection exempts this uid's traffic.
    pub sidecar_uid: i64,
    pub sidecar_gid: i64,
    /// Envoy's admin port on 127.0.0.1, also where the probes ask `/ready`.
    pub admin_port: u16,
    /// Where the init container redirects inbound and outbound TCP.
    pub inbound_redirect_port: u16,
    pub outbound_redirect_port: u16,
    /// `KUMA_DATAPLANE_DRAIN_TIME` (a duration such as `30s`).
    pub drain_time: String,
    /// kuma-dp's `--log-level`.
    pub log_level: String,
    pub sidecar_resources: Resources,
    pub init_resources: Resources,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        InjectorConfig {
            sidecar_image: format!("kuma-rs/kuma-dp:{version}"),
            init_image: format!("kuma-rs/kuma-init:{version}"),
            control_plane_url: "https://kuma-control-plane.kuma-system:5682".into(),
            control_plane_ca_pem: String::new(),
            system_namespace: "kuma-system".into(),
            sidecar_uid: 5678,
            sidecar_gid: 5678,
            admin_port: 9901,
            inbound_redirect_port: 15006,
            outbound_redirect_port: 15001,
            drain_time: "30s".into(),
            log_level: "info".into(),
            sidecar_resources: Resources {
                requests_cpu: "50m".into(),
                requests_memory: "64Mi".into(),
                limits_cpu: "1000m".into(),
                limits_memory: "512Mi".into(),
            },
            init_resources: Resources {
                requests_cpu: "10m".into(),
                requests_memory: "10Mi".into(),
                limits_cpu: "100m".into(),
                limits_memory: "50Mi".into(),
            },
        }
    }
}

/// A setting of [`InjectorConfig`] that cannot work, named with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectorConfigError {
    #[error("the injector's {field} is empty: set it")]
    Empty { field: &'static str },
    #[error(
        "the injector's control plane URL {0:?} is not an http:// or https:// URL: set it to the \
         bootstrap server, e.g. https://kuma-control-plane.kuma-system:5682"
    )]
    ControlPlaneUrl(String),
    #[error(
        "the injector's control plane CA is not a PEM certificate: give the CA that signed the \
         bootstrap server's certificate, or nothing"
    )]
    CaPem,
    #[error(
        "the injector's sidecar uid {0} is root: give the sidecar its own uid (Kuma uses 5678)"
    )]
    RootUid(i64),
    #[error(
        "the injector's ports collide or are 0 (admin {admin}, inbound {inbound}, outbound \
         {outbound}): give each its own port"
    )]
    Ports { admin: u16, inbound: u16, outbound: u16 },
}

impl InjectorConfig {
    /// The first setting that cannot work, if any.
    pub fn validate(&self) -> Result<(), InjectorConfigError> {
        for (field, value) in [
            ("sidecar image", &self.sidecar_image),
            ("init image", &self.init_image),
            ("system namespace", &self.system_namespace),
            ("drain time", &self.drain_time),
            ("log level", &self.log_level),
        ] {
            if value.trim().is_empty() {
                return Err(InjectorConfigError::Empty { field });
            }
        }
        let url = &self.control_plane_url;
        let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(str::is_empty) {
            return Err(InjectorConfigError::ControlPlaneUrl(url.clone()));
        }
        if !self.control_plane_ca_pem.is_empty()
            && !self.control_plane_ca_pem.contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(InjectorConfigError::CaPem);
        }
        if self.sidecar_uid == 0 {
            return Err(InjectorConfigError::RootUid(self.sidecar_uid));
        }
        let (admin, inbound, outbound) =
            (self.admin_port, self.inbound_redirect_port, self.outbound_redirect_port);
        if admin == 0
            || inbound == 0
            || outbound == 0
            || admin == inbound
            || admin == outbound
            || inbound == outbound
        {
            return Err(InjectorConfigError::Ports { admin, inbound, outbound });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_settings_are_named() {
        assert_eq!(InjectorConfig::default().validate(), Ok(()));
        let bad = InjectorConfig { control_plane_url: "kuma-cp:5682".into(), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("\"kuma-cp:5682\""));
        let bad = InjectorConfig { sidecar_image: " ".into(), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("sidecar image"));
        let bad = InjectorConfig { control_plane_ca_pem: "junk".into(), ..Default::default() };
        assert_eq!(bad.validate(), Err(InjectorConfigError::CaPem));
        let bad = InjectorConfig { admin_port: 15001, ..Default::default() };
        assert!(matches!(bad.validate(), Err(InjectorConfigError::Ports { .. })));
    }
}
