//! Mutual TLS with the mesh's CA: the identity and CA secrets (delivered over ADS/SDS), the
//! server side of inbound listeners (a client certificate from the mesh CA is required) and the
//! client side of outbound clusters (the exact SPIFFE id of the destination service is verified).

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type as SecretType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use kuma_ca::spiffe_id;

use super::envoy::ads_config_source;

/// Name of the transport socket Envoy knows TLS by.
const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// The dataplane's own certificate and key: `identity_cert:secret:<mesh>`.
pub fn identity_secret_name(mesh: &str) -> String {
    format!("identity_cert:secret:{mesh}")
}

/// The mesh CA every peer is verified against: `mesh_ca:secret:<mesh>`.
pub fn mesh_ca_secret_name(mesh: &str) -> String {
    format!("mesh_ca:secret:{mesh}")
}

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::InlineString(text.to_string())),
        ..Default::default()
    })
}

/// The identity secret: certificate chain and private key.
pub fn identity_secret(mesh: &str, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        name: identity_secret_name(mesh),
        r#type: Some(SecretType::TlsCertificate(TlsCertificate {
            certificate_chain: inline(cert_pem),
            private_key: inline(key_pem),
            ..Default::default()
        })),
    }
}

/// The mesh CA secret: the trusted CA certificate.
pub fn mesh_ca_secret(mesh: &str, ca_pem: &str) -> Secret {
    Secret {
        name: mesh_ca_secret_name(mesh),
        r#type: Some(SecretType::ValidationContext(CertificateValidationContext {
            trusted_ca: inline(ca_pem),
            ..Default::default()
        })),
    }
}

fn sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig { name, sds_config: Some(ads_config_source()) }
}

fn uri_matcher(pattern: MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher { match_pattern: Some(pattern), ..Default::default() }),
        ..Default::default()
    }
}

/// Our identity, plus peers verified against the mesh CA and `san`.
fn common(mesh: &str, san: SubjectAltNameMatcher) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(identity_secret_name(mesh))],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![san],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(mesh_ca_secret_name(mesh))),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Server side of an inbound listener: a client certificate of any service of the mesh is
/// required (which services may connect is TrafficPermission's job).
pub fn downstream_tls(mesh: &str) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common(
            mesh,
            uri_matcher(MatchPattern::Prefix(format!("spiffe://{mesh}/"))),
        )),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}

/// Client side of an outbound cluster: presents our identity and accepts only `service`.
pub fn upstream_tls(mesh: &str, service: &str) -> TransportSocket {
    let context = UpstreamTlsContext {
        common_tls_context: Some(common(
            mesh,
            uri_matcher(MatchPattern::Exact(spiffe_id(mesh, service))),
        )),
        ..Default::default()
    };
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(context))),
    }
}
