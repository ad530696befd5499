//! Parsing `--admin-port` and finding a free port.

use super::*;

fn range(first: u16, last: u16) -> AdminPort {
    AdminPort::Range { first, last }
}

#[test]
fn kumas_four_forms_parse_to_ranges() {
    assert_eq!(AdminPort::parse("9901"), Ok(range(9901, 9901)));
    assert_eq!(AdminPort::parse("9901-9999"), Ok(range(9901, 9999)));
    assert_eq!(AdminPort::parse("9901-"), Ok(range(9901, 65535)));
    assert_eq!(AdminPort::parse("-9901"), Ok(range(1, 9901)));
    assert_eq!(AdminPort::parse(" 30001-65535 "), Ok(AdminPort::DEFAULT));
    assert_eq!(AdminPort::parse("65535"), Ok(range(65535, 65535)));
    assert_eq!(AdminPort::parse("9901-9901"), Ok(range(9901, 9901)));
}

#[test]
fn empty_or_zero_means_no_admin_server() {
    for value in ["", "  ", "0"] {
        assert_eq!(AdminPort::parse(value), Ok(AdminPort::Disabled), "{value:?}");
    }
}

#[test]
fn bad_values_say_why_and_list_the_accepted_forms() {
    for (value, why) in [
        ("abc", "\"abc\" is not a port 1-65535"),
        ("70000", "\"70000\" is not a port 1-65535"),
        ("0-100", "\"0\" is not a port 1-65535"),
        ("100-0", "\"0\" is not a port 1-65535"),
        ("-", "a range needs a first or a last port"),
        ("1-2-3", "\"2-3\" is not a port 1-65535"),
        ("9999-9901", "the range 9999-9901 is reversed: write 9901-9999"),
        ("+9901", "\"+9901\" is not a port 1-65535"),
        ("9901,9902", "\"9901,9902\" is not a port 1-65535"),
    ] {
        let err = value.parse::<AdminPort>().expect_err(value);
        assert_eq!(err, format!("{why}; use {ADMIN_PORT_FORMS}"), "{value:?}");
    }
}

#[test]
fn a_range_is_written_back_the_way_the_flag_takes_it() {
    for value in ["9901", "9901-9999", "30001-65535"] {
        assert_eq!(AdminPort::parse(value).unwrap().to_string(), value);
    }
    assert_eq!(AdminPort::Disabled.to_string(), "\"\"");
    assert_eq!(AdminPort::default(), AdminPort::DEFAULT);
}

#[test]
fn the_walk_visits_every_port_once_from_its_start_and_wraps() {
    assert_eq!(walk(10, 14, 12).collect::<Vec<_>>(), [12, 13, 14, 10, 11]);
    assert_eq!(walk(10, 14, 10).collect::<Vec<_>>(), [10, 11, 12, 13, 14]);
    assert_eq!(walk(65534, 65535, 65535).collect::<Vec<_>>(), [65535, 65534]);
    assert_eq!(walk(7, 7, 7).collect::<Vec<_>>(), [7]);
    assert_eq!(walk(1, 65535, 30001).count(), 65535);
}

#[test]
fn the_random_start_stays_in_the_range_and_varies() {
    let starts: std::collections::HashSet<u16> =
        (0..50).map(|_| random_port(30001, 65535)).collect();
    assert!(starts.iter().all(|p| (30001..=65535).contains(p)), "{starts:?}");
    // 50 draws of 35535 ports: all equal would mean the start is not random.
    assert!(starts.len() > 1, "{starts:?}");
    assert_eq!(random_port(9901, 9901), 9901);
}

#[test]
fn disabled_reserves_nothing() {
    assert!(AdminPort::Disabled.reserve().expect("nothing to bind").is_none());
}

#[test]
fn a_reserved_port_is_held_until_released() {
    let held = AdminPort::DEFAULT.reserve().expect("a free port").expect("enabled");
    let port = held.port();
    assert!((30001..=65535).contains(&port), "{port}");
    assert_eq!(held.address().to_string(), format!("127.0.0.1:{port}"));
    assert!(is_taken(port), "kuma-dp holds it");
    // A second search of the same range (another kuma-dp) passes it over.
    let other = AdminPort::DEFAULT.reserve().expect("a free port").expect("enabled");
    assert_ne!(other.port(), port);
    assert_eq!(held.release(), port);
    assert!(!is_taken(port), "free for Envoy once released");
}

#[test]
fn a_taken_port_is_refused_with_the_bind_error() {
    // The kernel's choice, so no other test holds it.
    let taker = TcpListener::bind((ADMIN_ADDRESS, 0)).expect("bind");
    let port = taker.local_addr().unwrap().port();
    assert!(is_taken(port));
    let err = range(port, port).reserve().expect_err("taken");
    assert_eq!(err.source.kind(), std::io::ErrorKind::AddrInUse, "{err:?}");
    let err = crate::KumaDpError::from(err);
    assert_eq!(
        err.with_causes().to_string(),
        format!(
            "no port of --admin-port {port} is free on 127.0.0.1 (pass a free port, a range such \
             as 30001-65535, or \"\" for no admin server, with --admin-port or \
             KUMA_DATAPLANE_ADMIN_PORT): Address already in use (os error 98)"
        )
    );
    assert_eq!(err.exit_code(), 1);
}
