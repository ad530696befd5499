//! Rules of the Mesh: CA, logging, tracing and metrics backends, in both Kuma's 0.4 and 0.5 forms.

use super::{Path, Report, Validate, ValidationContext};
use crate::mesh::{CaDataSource, MeshSpec, PrometheusConf};

fn data_source(report: &mut Report, path: &Path, source: Option<&CaDataSource>) {
    match source {
        None => report.add(path, "has to be set"),
        Some(s) => {
            let set = [s.secret.is_some(), s.file.is_some(), s.inline.is_some()];
            if set.iter().filter(|x| **x).count() != 1 {
                report.add(path, "has to set exactly one of secret, file or inline");
            }
        }
    }
}

fn host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has to be in HOST:PORT format"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{address:?} has no host; expected HOST:PORT"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => {
            Err(format!("{address:?} has no valid port; expected HOST:PORT with a port in 1-65535"))
        }
    }
}

/// Checks an `http(s)://host:port/...` URL; Envoy's zipkin collector needs an explicit port.
fn url_with_port(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} has to be an http:// or https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    host_port(authority).map_err(|_| {
        format!("{url:?} has to include a host and a port, e.g. http://zipkin:9411/api/v2/spans")
    })
}

pub(super) fn prometheus_conf(report: &mut Report, path: &Path, conf: &PrometheusConf) {
    report.port(&path.field("port"), conf.port, false);
    if let Some(p) = &conf.path {
        if !p.starts_with('/') {
            report.add(&path.field("path"), "has to start with '/'");
        }
    }
}

impl Validate for MeshSpec {
    fn validate(&self, _ctx: &ValidationContext<'_>, report: &mut Report) {
        let root = Path::root();
        if let Some(mtls) = &self.mtls {
            let p = root.field("mtls");
            if (mtls.enabled.is_some() || mtls.ca.is_some())
                && (mtls.enabled_backend.is_some() || !mtls.backends.is_empty())
            {
                report
                    .add(&p, "cannot mix enabled/ca (Kuma 0.4 form) with enabledBackend/backends");
            }
            if let Some(ca) = &mtls.ca {
                if ca.builtin.is_some() == ca.provided.is_some() {
                    report.add(&p.field("ca"), "has to set exactly one of builtin or provided");
                }
            }
            let backends = p.field("backends");
            report.unique_names(&backends, mtls.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in mtls.backends.iter().enumerate() {
                let bp = backends.index(i);
                let conf = backend.conf.clone().unwrap_or_default();
                match backend.kind.as_str() {
                    "builtin" => {
                        if let Some(ca_cert) = &conf.ca_cert {
                            if ca_cert.rsa_bits.is_some_and(|b| b < 2048) {
                                report.add(
                                    &bp.field("conf").field("caCert").field("RSAbits"),
                                    "has to be at least 2048",
                                );
                            }
                            if ca_cert.expiration.is_some() {
                                report.positive_duration(
                                    &bp.field("conf").field("caCert").field("expiration"),
                                    ca_cert.expiration.as_deref(),
                                );
                            }
                        }
                        if conf.cert.is_some() || conf.key.is_some() {
                            report.add(
                                &bp.field("conf"),
                                "cert and key are set only for a provided CA",
                            );
                        }
                    }
                    "provided" => {
                        data_source(report, &bp.field("conf").field("cert"), conf.cert.as_ref());
                        data_source(report, &bp.field("conf").field("key"), conf.key.as_ref());
                    }
                    other => report.add(
                        &bp.field("type"),
                        format!("{other:?} is unknown; has to be one of builtin, provided"),
                    ),
                }
                if let Some(expiration) = backend
                    .dp_cert
                    .as_ref()
                    .and_then(|d| d.rotation.as_ref())
                    .and_then(|r| r.expiration.as_deref())
                {
                    report.positive_duration(
                        &bp.field("dpCert").field("rotation").field("expiration"),
                        Some(expiration),
                    );
                }
            }
            let names: Vec<&str> = mtls.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("enabledBackend"),
                mtls.enabled_backend.as_deref(),
                &names,
                "CA backend",
            );
        }

        if let Some(logging) = &self.logging {
            let p = root.field("logging");
            let backends = p.field("backends");
            report.unique_names(&backends, logging.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in logging.backends.iter().enumerate() {
                let bp = backends.index(i);
                let forms = [backend.kind.is_some(), backend.file.is_some(), backend.tcp.is_some()];
                if forms.iter().filter(|x| **x).count() > 1
                    || (backend.kind.is_none() && backend.conf.is_some())
                {
                    report.add(&bp, "use either type + conf, or one of file / tcp");
                    continue;
                }
                let conf = backend.conf.as_ref().or(backend.file.as_ref()).or(backend.tcp.as_ref());
                match backend.backend_type() {
                    Some("file") => {
                        if conf.and_then(|c| c.path.as_deref()).is_none_or(str::is_empty) {
                            report.add(
                                &bp.field(if backend.file.is_some() { "file" } else { "conf" })
                                    .field("path"),
                                "has to be set",
                            );
                        }
                    }
                    Some("tcp") => {
                        let field = bp
                            .field(if backend.tcp.is_some() { "tcp" } else { "conf" })
                            .field("address");
                        match conf.and_then(|c| c.address.as_deref()) {
                            None => report.add(&field, "has to be set"),
                            Some(a) => {
                                if let Err(e) = host_port(a) {
                                    report.add(&field, e);
                                }
                            }
                        }
                    }
                    Some(other) => report.add(
                        &bp.field("type"),
                        format!("{other:?} is unknown; has to be one of file, tcp"),
                    ),
                    None => report.add(&bp.field("type"), "has to be set to file or tcp"),
                }
            }
            let names: Vec<&str> = logging.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("defaultBackend"),
                logging.default_backend.as_deref(),
                &names,
                "logging backend",
            );
        }

        if let Some(tracing) = &self.tracing {
            let p = root.field("tracing");
            let backends = p.field("backends");
            report.unique_names(&backends, tracing.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in tracing.backends.iter().enumerate() {
                let bp = backends.index(i);
                if let Some(sampling) = backend.sampling {
                    if !(0.0..=100.0).contains(&sampling) {
                        report.add(&bp.field("sampling"), "has to be in the range 0-100");
                    }
                }
                if backend.kind.is_some() && backend.zipkin.is_some() {
                    report.add(&bp, "use either type + conf, or zipkin");
                    continue;
                }
                let (conf_field, conf) = match (&backend.kind, &backend.zipkin) {
                    (Some(kind), _) if kind != "zipkin" => {
                        report.add(
                            &bp.field("type"),
                            format!("{kind:?} is unknown; has to be zipkin"),
                        );
                        continue;
                    }
                    (Some(_), _) => ("conf", backend.conf.as_ref()),
                    (None, Some(z)) => ("zipkin", Some(z)),
                    (None, None) => {
                        report.add(&bp.field("type"), "has to be set to zipkin");
                        continue;
                    }
                };
                let cp = bp.field(conf_field);
                match conf.and_then(|c| c.url.as_deref()) {
                    None => report.add(&cp.field("url"), "has to be set"),
                    Some(url) => {
                        if let Err(e) = url_with_port(url) {
                            report.add(&cp.field("url"), e);
                        }
                    }
                }
                if let Some(api) = conf.and_then(|c| c.api_version.as_deref()) {
                    if !["httpJsonV1", "httpJson", "httpProto"].contains(&api) {
                        report.add(&cp.field("apiVersion"), format!("{api:?} is unknown; has to be one of httpJsonV1, httpJson, httpProto"));
                    }
                }
            }
            let names: Vec<&str> = tracing.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("defaultBackend"),
                tracing.default_backend.as_deref(),
                &names,
                "tracing backend",
            );
        }

        if let Some(metrics) = &self.metrics {
            let p = root.field("metrics");
            if metrics.prometheus.is_some()
                && (metrics.enabled_backend.is_some() || !metrics.backends.is_empty())
            {
                report
                    .add(&p, "cannot mix prometheus (Kuma 0.4 form) with enabledBackend/backends");
            }
            if let Some(prometheus) = &metrics.prometheus {
                prometheus_conf(report, &p.field("prometheus"), prometheus);
            }
            let backends = p.field("backends");
            report.unique_names(&backends, metrics.backends.iter().map(|b| b.name.as_str()));
            for (i, backend) in metrics.backends.iter().enumerate() {
                let bp = backends.index(i);
                if backend.kind != "prometheus" {
                    report.add(
                        &bp.field("type"),
                        format!("{:?} is unknown; has to be prometheus", backend.kind),
                    );
                }
                if let Some(conf) = &backend.conf {
                    prometheus_conf(report, &bp.field("conf"), conf);
                }
            }
            let names: Vec<&str> = metrics.backends.iter().map(|b| b.name.as_str()).collect();
            report.reference(
                &p.field("enabledBackend"),
                metrics.enabled_backend.as_deref(),
                &names,
                "metrics backend",
            );
        }
    }
}
