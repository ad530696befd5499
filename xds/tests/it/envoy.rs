//! Real Envoy processes against the in-process xDS server.
