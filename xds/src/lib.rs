//! xDS for Envoy: snapshot cache, ADS/SDS servers, generators and the bootstrap generator
//! (DESIGN.md section 5). Depends on the store only through the `ResourceStore` trait.
//!
//! Empty until the data-plane issue lands; the crate exists so the workspace layout is fixed from the start.
