//! kuma-tcp-echo: echoes every byte on concurrent connections; refuses a bad `-port`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use kuma_test_support::poll_until;

use crate::support::{must_start_tcp_echo, round_trip, Proc, DEADLINE};

#[test]
fn tcp_echo_announces_its_port_and_echoes_every_byte_on_concurrent_connections() {
    let (echo, port) = must_start_tcp_echo();
    poll_until(DEADLINE, "the listening line", || {
        let log = echo.log();
        let expected = format!("Kuma TCP Echo - Listening to connections on port {port}\n");
        if log == expected {
            Ok(())
        } else {
            Err(log)
        }
    });

    // Every connection is open at once and answers before any is closed.
    let mut connections: Vec<TcpStream> =
        (0..8).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    for (i, stream) in connections.iter_mut().enumerate() {
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        writeln!(stream, "hello {i}").expect("send");
    }
    for (i, stream) in connections.iter_mut().enumerate() {
        let expected = format!("hello {i}\n");
        let mut echoed = vec![0; expected.len()];
        stream.read_exact(&mut echoed).expect("echo");
        assert_eq!(echoed, expected.as_bytes());
    }

    // Then a larger payload on each, all in flight together.
    let senders: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..256 * 1024).map(|n| (n * 7 + i) as u8).collect();
                assert_eq!(round_trip(stream, &payload), payload, "connection {i}");
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("every connection echoed its payload");
    }
}

#[test]
fn tcp_echo_refuses_a_bad_port_flag_with_one_line_and_exit_2() {
    for args in [&["-port", "abc"][..], &["-port"], &["--port=70000"], &["-prot", "9000"]] {
        let exited = Proc::spawn(Path::new(env!("CARGO_BIN_EXE_kuma-tcp-echo")), args, &[])
            .must_exit_within(DEADLINE);
        assert_eq!(exited.code(), Some(2), "{args:?}: {}", exited.log);
        assert_eq!(exited.log.lines().count(), 1, "{args:?}: one line: {}", exited.log);
        let line = exited.must_error_line();
        assert!(line.contains("-port"), "{args:?}: {line}");
    }
}
