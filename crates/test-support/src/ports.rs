use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago. Another socket could take it before the
/// test binds it, but the kernel picks it at random from a range of ~28,000 ports, so that is rare.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 always works on a test machine")
}
