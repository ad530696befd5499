//! What several process tests share: kumactl with a config of its own, and a Dataplane in the
//! seeds' form.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kuma_test_support::bin_path;

/// kumactl with its own `~/.kumactl/config`.
pub struct Kumactl {
    pub home: tempfile::TempDir,
}

impl Kumactl {
    pub fn new() -> Kumactl {
        Kumactl { home: tempfile::tempdir().unwrap() }
    }

    /// A kumactl whose active control plane is `api_url`.
    pub fn must_connect(api_url: &str) -> Kumactl {
        let ctl = Kumactl::new();
        ctl.must_add(api_url, &[]);
        ctl
    }

    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(bin_path("kumactl"))
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kumactl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().expect("kumactl runs")
    }

    pub fn must_succeed(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(out.status.success(), "kumactl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Its standard error, after asserting it failed.
    pub fn must_fail(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(!out.status.success(), "kumactl {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `config control-planes add --name cp --address URL` with `flags`.
    pub fn add(&self, url: &str, flags: &[&str]) -> Output {
        let mut args = vec!["config", "control-planes", "add", "--name", "cp", "--address", url];
        args.extend_from_slice(flags);
        self.run(&args, "")
    }

    pub fn must_add(&self, url: &str, flags: &[&str]) {
        let out = self.add(url, flags);
        assert!(out.status.success(), "adding {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A Dataplane of mesh `default` in the seeds' form (JSON), with one inbound and maybe an
/// outbound to `redis`.
pub fn dataplane(name: &str, inbound: &str, service: &str, outbound: Option<u16>) -> String {
    let outbound = outbound
        .map(|port| format!(r#","outbound":[{{"interface":":{port}","service":"redis"}}]"#))
        .unwrap_or_default();
    format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"inbound":[{{"interface":"{inbound}","tags":{{"service":"{service}"}}}}]{outbound}}}}}"#
    )
}
