use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use crate::{free_port, try_poll_until};

/// How long a fresh PostgreSQL gets to accept connections (well under a second on a quiet
/// machine; a loaded one running many test processes needs more).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Changes when the template's settings change, so a cached template of older settings is not
/// reused.
const TEMPLATE_LAYOUT: u32 = 2;

/// The superuser of every test server, its password, and the database it starts with: Kuma's
/// defaults (`user kuma`, `password kuma`, `dbName kuma`).
pub const PG_USER: &str = "kuma";
pub const PG_PASSWORD: &str = "kuma";
pub const PG_DATABASE: &str = "kuma";

/// A real PostgreSQL server (Debian's, from `/usr/lib/postgresql/<version>/bin`) listening only
/// on 127.0.0.1 on a free port, with its data in a temp dir. Password authentication (SCRAM) over
/// TCP for the user `kuma` (password `kuma`), who owns the database `kuma`; no Unix socket.
///
/// PostgreSQL refuses to run as root, so when the tests run as root (as here), `initdb` and
/// `postgres` run as the `postgres` user (`setpriv`). Each test process starts its own server:
/// the cluster is initialised once into a cached template (`$CARGO_TARGET_DIR` or
/// `~/.cache/kuma-rs`), which each server copies. Dropping it stops the server (fast shutdown, then SIGKILL) and removes the data.
#[derive(Debug)]
pub struct PgServer {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Extra `-c name=value` settings (TLS), kept to start the server again.
    settings: Vec<String>,
    starts: u32,
}

impl PgServer {
    /// Starts a server and waits until it accepts connections; panics with its log otherwise.
    pub fn must_start() -> PgServer {
        PgServer::must_start_with(&[], None)
    }

    /// Starts a server with `ssl=on`, serving `cert_pem` (the chain, leaf first) with `key_pem`.
    /// Clients may still connect without TLS.
    pub fn must_start_with_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        PgServer::must_start_with(&[], Some((cert_pem, key_pem)))
    }

    /// Starts a server with `ssl=on` that also asks clients for a certificate signed by
    /// `client_ca_pem` (checked when one is presented; password authentication stays).
    pub fn must_start_with_client_ca(
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: &str,
    ) -> PgServer {
        PgServer::must_start_inner(&[], Some((cert_pem, key_pem)), Some(client_ca_pem))
    }

    /// Starts a server with extra `name=value` settings (and optionally TLS).
    pub fn must_start_with(settings: &[&str], tls: Option<(&str, &str)>) -> PgServer {
        PgServer::must_start_inner(settings, tls, None)
    }

    fn must_start_inner(
        settings: &[&str],
        tls: Option<(&str, &str)>,
        client_ca: Option<&str>,
    ) -> PgServer {
        let bin = must_find_bin_dir();
        let template = must_template(&bin);
        let dir = tempfile::Builder::new().prefix("kuma-pg-").tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        must_run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        let mut settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        if let Some((cert, key)) = tls {
            let cert_file = dir.path().join("server.crt");
            let key_file = dir.path().join("server.key");
            std::fs::write(&cert_file, cert).expect("write the server certificate");
            std::fs::write(&key_file, key).expect("write the server key");
            must_run(Command::new("chmod").arg("0600").arg(&key_file));
            settings.push("ssl=on".into());
            settings.push(format!("ssl_cert_file={}", cert_file.display()));
            settings.push(format!("ssl_key_file={}", key_file.display()));
        }
        if let Some(ca) = client_ca {
            let ca_file = dir.path().join("client-ca.crt");
            std::fs::write(&ca_file, ca).expect("write the client CA");
            settings.push(format!("ssl_ca_file={}", ca_file.display()));
        }
        must_chown_to_postgres(dir.path());
        let mut server = PgServer { child: None, port: 0, bin, dir, settings, starts: 0 };
        for attempt in 1..=3 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(_) if attempt < 3 && server.lost_its_port() => continue,
                Err(why) => panic!("PostgreSQL did not start: {why}\n{}", server.log()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("a log file");
        let mut command = as_postgres(&self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        let err = log.try_clone().expect("a log file");
        command.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = command.spawn().map_err(|e| format!("spawn postgres: {e}"))?;
        self.child = Some(child);
        try_poll_until(READY_WITHIN, || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Ok(Err(format!("postgres exited ({status})")));
            }
            match self.psql(PG_DATABASE, "SELECT 1") {
                Ok(_) => Ok(Ok(())),
                Err(e) => Err(e),
            }
        })
        .unwrap_or_else(|last| Err(format!("not ready within {READY_WITHIN:?}: {last}")))
    }

    fn lost_its_port(&self) -> bool {
        self.log().contains("Address already in use")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("postgres.{}.log", self.starts))
    }

    /// The server's log since it was last started.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits for it; its data
    /// stays for `must_start_again`.
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::INT);
            }
            let stopped = try_poll_until(Duration::from_secs(10), || match child.try_wait() {
                Ok(Some(_)) => Ok(()),
                _ => Err(()),
            });
            if stopped.is_err() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts the stopped server again on the same port with the same data.
    pub fn must_start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running; stop it first");
        let started = try_poll_until(READY_WITHIN, || self.try_start());
        if let Err(why) = started {
            panic!("PostgreSQL did not start again: {why}\n{}", self.log());
        }
    }

    /// Freezes the server and every backend (SIGSTOP): connections stay open and connecting
    /// still reaches the listen queue, but nothing answers, as with a hung database host.
    /// The postmaster is stopped first and its children listed after, so a backend it forks
    /// meanwhile (a pool opening a connection) is frozen too instead of answering.
    pub fn pause(&self) {
        let mut processes = self.processes().into_iter();
        if let Some(postmaster) = processes.next() {
            let _ = kill_process(postmaster, Signal::STOP);
        }
        for pid in self.processes().into_iter().skip(1) {
            let _ = kill_process(pid, Signal::STOP);
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        for pid in self.processes() {
            let _ = kill_process(pid, Signal::CONT);
        }
    }

    /// The postmaster and its children (the backends and background workers).
    fn processes(&self) -> Vec<Pid> {
        let Some(postmaster) = self.pid() else { return Vec::new() };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parens.
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids.into_iter().filter_map(|pid| i32::try_from(pid).ok().and_then(Pid::from_raw)).collect()
    }

    /// The process id of the postmaster (for tests that pause it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Creates a database owned by `kuma`.
    pub fn must_create_database(&self, name: &str) {
        let sql = format!("CREATE DATABASE \"{}\" OWNER {PG_USER}", name.replace('"', "\"\""));
        if let Err(e) = self.psql(PG_DATABASE, &sql) {
            panic!("create database {name}: {e}\n{}", self.log());
        }
    }

    /// Runs `sql` in `database` with `psql` as `kuma`; returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", PG_USER, "-d", database])
            .args(["-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// `psql`, panicking with the error.
    pub fn must_psql(&self, database: &str, sql: &str) -> String {
        self.psql(database, sql).unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/usr/lib/postgresql/<newest version>/bin`, or a panic saying how to install it.
fn must_find_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server in {}/<version>/bin: run `make setup-tests` (it installs \
             Debian's postgresql package)",
            root.display()
        ),
    }
}

/// The cached, initialised cluster for the server binaries in `bin`, created on first use. Test
/// processes racing to create it each build their own copy and rename it into place; the first
/// rename wins and the others discard theirs.
fn must_template(bin: &Path) -> PathBuf {
    let version = bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|v| v.to_str())
        .unwrap_or("unknown")
        .to_string();
    let cache = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kuma-rs")))
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kuma-pg-template-{version}-{TEMPLATE_LAYOUT}"));
    if cache.join("PG_VERSION").is_file() {
        return cache;
    }
    // initdb runs as `postgres`, which cannot enter root's home: build in the temp dir.
    let work = tempfile::Builder::new().prefix("kuma-pg-initdb-").tempdir().expect("a temp dir");
    let data = work.path().join("data");
    let pwfile = work.path().join("pwfile");
    std::fs::write(&pwfile, PG_PASSWORD).expect("write the password file");
    must_chown_to_postgres(work.path());
    must_run(
        as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", PG_USER, "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"])
            // 1 MiB WAL segments instead of 16: every server copies the template, and copying
            // is most of a server's start.
            .arg("--wal-segsize=1")
            .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
            .arg(format!("--pwfile={}", pwfile.display())),
    );
    // Small and fast: tests need neither durability nor a large cache, and many servers run at
    // once. `kuma` is created in single-user mode, so no server has to start for it.
    let conf = "\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                shared_buffers = 16MB\nmax_connections = 60\nmax_wal_size = 64MB\n\
                log_min_messages = warning\n";
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("open postgresql.conf");
    std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
    let mut single = as_postgres(&bin.join("postgres"))
        .args(["--single", "-D"])
        .arg(&data)
        .arg("template1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn postgres --single");
    // `kuma` replaces the `postgres` database (one database less to copy per server).
    let sql = format!("CREATE DATABASE {PG_DATABASE} OWNER {PG_USER};\nDROP DATABASE postgres;\n");
    std::io::Write::write_all(single.stdin.as_mut().expect("stdin"), sql.as_bytes())
        .expect("write to postgres --single");
    let output = single.wait_with_output().expect("postgres --single");
    assert!(
        output.status.success(),
        "create the database {PG_DATABASE}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::create_dir_all(cache.parent().expect("a parent")).expect("the cache dir");
    let staged = cache.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&staged);
    must_run(Command::new("cp").arg("-a").arg(&data).arg(&staged));
    if std::fs::rename(&staged, &cache).is_err() {
        // Another process put its template in place first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(cache.join("PG_VERSION").is_file(), "no template in {}", cache.display());
    cache
}

/// `program` as the `postgres` user when the tests run as root (PostgreSQL refuses to run as
/// root); as the current user otherwise.
fn as_postgres(program: &Path) -> Command {
    if rustix::process::geteuid().is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Hands `path` to the `postgres` user when running as root (see `as_postgres`).
fn must_chown_to_postgres(path: &Path) {
    if rustix::process::geteuid().is_root() {
        must_run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(path));
    }
}

fn must_run(command: &mut Command) {
    let output =
        command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_keeps_its_data_across_a_restart_and_is_gone_once_dropped() {
        let mut server = PgServer::must_start();
        server.must_create_database("other");
        server.must_psql("other", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('yes')");
        let port = server.port();
        server.stop();
        assert!(server.psql("other", "SELECT 1").is_err(), "a stopped server answers");
        server.must_start_again();
        assert_eq!(server.port(), port);
        assert_eq!(server.must_psql("other", "SELECT v FROM kept"), "yes");
        let listening = server.must_psql("kuma", "SHOW listen_addresses");
        assert_eq!(listening, "127.0.0.1");
        let data = server.dir.path().to_path_buf();
        drop(server);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening");
        assert!(!data.exists(), "the data dir is removed");
    }
}
