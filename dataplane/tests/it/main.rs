//! Process-level tests of `kuma-dp` and `kuma-tcp-echo`: the real binaries, the real Envoy
//! (`kuma_test_support::envoy_path`), stand-in Envoy shell scripts where the test is about what
//! kuma-dp does with a child (its command line, exit status, a child that ignores SIGTERM), and a
//! small fake bootstrap server where the test is about kuma-dp's side of the bootstrap contract.
//! The walkthrough against a real kuma-cp is tested with the control plane.

mod admin_port;
mod bootstrap;
mod command_line;
mod envoy_child;
mod support;
mod tcp_access_log;
mod tcp_echo;
