//! The store contract, each check on its own fresh server.

kuma_store::conformance_suite!(crate::support::fresh_store());
