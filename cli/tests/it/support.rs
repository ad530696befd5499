//! Running the real `kumactl` binary with its own config file, and a tiny HTTP server for the
//! things that must not be kuma-cp (a file to apply from a URL, a server that is not Kuma).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kuma_test_support::KumaCp;

/// An address where nothing listens: port 1 (tcpmux) on loopback. A port from `free_port()`
/// could meanwhile be taken by another test process's kuma-cp (nextest runs each test in its own
/// process), so a test expecting "unreachable" would talk to that kuma-cp instead.
pub const CLOSED_URL: &str = "http://127.0.0.1:1";

/// A kumactl with a config file in its own temp dir (and HOME there, so `~/.kumactl` is never
/// the real one).
pub struct Ctl {
    dir: tempfile::TempDir,
}

/// What one kumactl run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    /// A kumactl with no config file yet (the built-in `local` control plane).
    pub fn new() -> Ctl {
        Ctl { dir: tempfile::tempdir().expect("a temp dir") }
    }

    /// A kumactl whose active control plane is `cp`, as `config control-planes add` leaves it.
    pub fn for_cp(cp: &KumaCp) -> Ctl {
        Ctl::for_url(&cp.api_url())
    }

    /// A kumactl whose active control plane is at `url`, written straight into the config file.
    pub fn for_url(url: &str) -> Ctl {
        let ctl = Ctl::new();
        let config = format!(
            "controlPlanes:\n- name: test\n  coordinates:\n    apiServer:\n      url: {url}\n\
             contexts:\n- name: test\n  controlPlane: test\n  defaults:\n    mesh: default\n\
             currentContext: test\n"
        );
        std::fs::create_dir_all(ctl.config_path().parent().unwrap()).unwrap();
        std::fs::write(ctl.config_path(), config).expect("write the kumactl config");
        ctl
    }

    /// Where `--config-file` points.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("kumactl/config")
    }

    /// A path inside this kumactl's temp dir, for files to apply.
    pub fn must_write_file(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write a file");
        path.to_string_lossy().into_owned()
    }

    /// Runs `kumactl --config-file <ours> args...` with `stdin` as its standard input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kumactl"))
            .arg("--config-file")
            .arg(self.config_path())
            .args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kumactl");
        child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("stdin");
        let output = child.wait_with_output().expect("kumactl runs to the end");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `kumactl args...` with an empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    /// Runs and panics unless it exits 0; returns stdout.
    pub fn must_run(&self, args: &[&str]) -> String {
        self.run(args).must_succeed()
    }

    /// `echo "$yaml" | kumactl apply -f -`, which must succeed and print nothing.
    pub fn must_apply(&self, yaml: &str) {
        let out = self.run_with_stdin(&["apply", "-f", "-"], yaml).must_succeed();
        assert_eq!(out, "", "apply prints nothing on success");
    }
}

impl Run {
    /// Panics (with both outputs) unless the exit code was 0; returns stdout.
    pub fn must_succeed(self) -> String {
        assert_eq!(self.code, Some(0), "kumactl failed: {self:#?}");
        self.stdout
    }

    /// Panics unless the exit code was 1 (not a crash, not success); returns stderr.
    pub fn must_fail(self) -> String {
        assert_eq!(self.code, Some(1), "kumactl should have failed with 1: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "kumactl panicked: {self:#?}");
        self.stderr
    }
}

/// Serves `body` with `content_type` to every request on a 127.0.0.1 port, from a thread that
/// lives as long as the test process; returns `http://127.0.0.1:<port>`.
pub fn must_serve(status: u16, content_type: &'static str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// The seeds' first walkthrough resource, as `echo "..."` passes it (with a final newline).
pub const REDIS_1: &str = "type: Dataplane
mesh: default
name: redis-1
networking:
  inbound:
  - interface: 127.0.0.1:9000:6379
    tags:
      service: redis
";

/// The seeds' second walkthrough resource.
pub const BACKEND_1: &str = "type: Dataplane
mesh: default
name: backend-1
networking:
  inbound:
  - interface: 127.0.0.1:8000:80
    tags:
      service: backend
  outbound:
  - interface: :10000
    service: redis
";

/// Replaces the last column (AGE) of every data row by `<age>`, after checking it is an age.
pub fn must_mask_age(table: &str) -> String {
    let mut lines = table.lines();
    let mut out = vec![lines.next().unwrap_or_default().to_string()];
    for line in lines {
        let (rest, age) = line.rsplit_once(' ').expect("a row has an AGE column");
        let unit = age.chars().last().unwrap_or(' ');
        assert!(
            age[..age.len() - 1].parse::<u64>().is_ok() && "smhdy".contains(unit),
            "{age:?} is not an age"
        );
        out.push(format!("{rest} <age>"));
    }
    out.join("\n") + "\n"
}
