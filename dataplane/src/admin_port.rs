//! `--admin-port`: where Envoy's admin server listens. Kuma 0.5's forms: a port (`9901`), a range
//! (`9901-9999`, `9901-` up to 65535, `-9901` from 1), or `""` (or `0`) for no admin server. By
//! default kuma-dp takes a free port of 30001-65535, so a mesh's prometheus metrics (which Envoy
//! serves from its admin) work on every dataplane without a flag.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::str::FromStr;

/// Envoy's admin listens on loopback only: its API can change and stop Envoy and has no
/// authentication, so it must never be reachable from another host. The metrics listener reaches
/// it from inside Envoy.
pub const ADMIN_ADDRESS: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The accepted forms, for error messages and `--help`.
pub(crate) const ADMIN_PORT_FORMS: &str =
    "a port (9901), a range (9901-9999, 9901- or -9901), or \"\" (or 0) for no admin server";

/// What `--admin-port` (or `KUMA_DATAPLANE_ADMIN_PORT`) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminPort {
    /// No admin server: Envoy's bootstrap has no `admin`, and a mesh's metrics answer 503.
    Disabled,
    /// The first free port of `first..=last` on [`ADMIN_ADDRESS`]; one port when they are equal.
    Range { first: u16, last: u16 },
}

impl AdminPort {
    /// Kuma's default range.
    pub const DEFAULT: AdminPort = AdminPort::Range { first: 30001, last: 65535 };

    /// Parses Kuma's forms; the error is the reason, which clap prints after the flag and value.
    pub fn parse(value: &str) -> Result<AdminPort, String> {
        let value = value.trim();
        if value.is_empty() || value == "0" {
            return Ok(AdminPort::Disabled);
        }
        let port = |text: &str| -> Result<u16, String> {
            // Digits only: u16's parser would also take "+9901".
            match text.parse::<u16>() {
                Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
                _ => Err(format!("{text:?} is not a port 1-65535")),
            }
        };
        let (first, last) = match value.split_once('-') {
            None => {
                let port = port(value)?;
                (port, port)
            }
            Some(("", "")) => return Err("a range needs a first or a last port".to_string()),
            Some(("", last)) => (1, port(last)?),
            Some((first, "")) => (port(first)?, u16::MAX),
            Some((first, last)) => (port(first)?, port(last)?),
        };
        if first > last {
            return Err(format!("the range {first}-{last} is reversed: write {last}-{first}"));
        }
        Ok(AdminPort::Range { first, last })
    }

    /// A port for Envoy's admin, held by kuma-dp until Envoy starts, or `None` when disabled.
    ///
    /// The ports of the range are tried by binding 127.0.0.1 at each, starting at a random port
    /// and wrapping around, so two kuma-dp starting together on one host do not both find the
    /// range's first port free and give it to both Envoys.
    ///
    /// A port found free can still be taken before Envoy binds it: kuma-dp holds it (a listening
    /// socket nobody connects to) until just before it starts Envoy, but in the moment between
    /// releasing it and Envoy's own bind another process may take it. Envoy then exits, and
    /// kuma-dp says so naming --admin-port ([`crate::KumaDpError::AdminPortTaken`]).
    pub fn reserve(self) -> Result<Option<AdminPortReservation>, AdminPortError> {
        let AdminPort::Range { first, last } = self else { return Ok(None) };
        let start = random_port(first, last);
        let mut last_error = None;
        for port in walk(first, last, start) {
            match TcpListener::bind((ADMIN_ADDRESS, port)) {
                Ok(listener) => return Ok(Some(AdminPortReservation { port, listener })),
                Err(e) => last_error = Some(e),
            }
        }
        Err(AdminPortError {
            ports: self,
            source: last_error.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
        })
    }
}

impl Default for AdminPort {
    fn default() -> Self {
        AdminPort::DEFAULT
    }
}

impl FromStr for AdminPort {
    type Err = String;

    fn from_str(value: &str) -> Result<AdminPort, String> {
        AdminPort::parse(value).map_err(|reason| format!("{reason}; use {ADMIN_PORT_FORMS}"))
    }
}

/// The form `--admin-port` takes: `9901`, `9901-9999`, or `""`.
impl fmt::Display for AdminPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AdminPort::Disabled => write!(f, "\"\""),
            AdminPort::Range { first, last } if first == last => write!(f, "{first}"),
            AdminPort::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

/// No port of `--admin-port` could be bound on 127.0.0.1; `source` is the last bind's error.
#[derive(Debug, thiserror::Error)]
#[error(
    "no port of --admin-port {ports} is free on 127.0.0.1 (pass a free port, a range such as \
     30001-65535, or \"\" for no admin server, with --admin-port or KUMA_DATAPLANE_ADMIN_PORT)"
)]
pub struct AdminPortError {
    pub ports: AdminPort,
    #[source]
    pub source: std::io::Error,
}

/// A port chosen for Envoy's admin, kept bound by kuma-dp until [`AdminPortReservation::release`],
/// so no other kuma-dp searching the same range picks it meanwhile.
#[derive(Debug)]
pub struct AdminPortReservation {
    port: u16,
    listener: TcpListener,
}

impl AdminPortReservation {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((ADMIN_ADDRESS, self.port))
    }

    /// Closes kuma-dp's socket (nobody connected to it, so the port is free at once) for Envoy to
    /// bind; the port.
    pub fn release(self) -> u16 {
        drop(self.listener);
        self.port
    }
}

/// Whether another process holds `port` on 127.0.0.1: asked after Envoy failed, when its own admin
/// socket is closed, to tell a port taken before Envoy bound it from other failures.
pub(crate) fn is_taken(port: u16) -> bool {
    matches!(
        TcpListener::bind((ADMIN_ADDRESS, port)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    )
}

/// A port of `first..=last`, different from one process and call to the next.
fn random_port(first: u16, last: u16) -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let span = u64::from(last - first) + 1;
    first + (hasher.finish() % span) as u16
}

/// Every port of `first..=last` once, from `start` up to `last`, then from `first` up to before
/// `start`.
fn walk(first: u16, last: u16, start: u16) -> impl Iterator<Item = u16> {
    (start..=last).chain(first..start)
}

#[cfg(test)]
mod tests;
