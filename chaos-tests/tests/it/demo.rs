//! `.ci/demo`, the quick start, run as a newcomer runs it: three kuma-cp peers with the Raft store,
//! the seeds' walkthrough through two real Envoys, the leader killed, traffic still echoing, a new
//! leader, a write through a survivor, the killed peer back and caught up (`--non-interactive`);
//! and the single-peer variant left running, then stopped with Ctrl-C (SIGINT). Each run gets a
//! block of ports of its own (`--port-base`), its own TMPDIR, and a marker in its environment, so
//! that whatever it started and left behind can be found.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Ports the demo takes above its base: peer P's six at 10(P-1)..10(P-1)+6, the workloads at
/// 30..33 (see the header of `.ci/demo`).
const PORTS_PER_DEMO: u16 = 34;
/// The three-peer run takes about 4 s with debug binaries on 2 idle cores; the deadline leaves
/// room for a machine busy with other work.
const DEMO_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn the_demo_fails_over_from_a_killed_leader_and_leaves_nothing_behind() {
    let mut demo = DemoRun::start(&["--non-interactive"]);
    let (status, output) = demo.must_finish_within(DEMO_DEADLINE);
    println!("{output}");
    assert!(status.success(), "the demo failed ({status}):\n{output}");

    let start = section(&output, "=== 1.");
    let before = must_single_table(start, "$ kumactl inspect control-planes");
    let leader = must_be_three_peers_one_leader(&before, &output);
    assert!(start.contains(&format!("leader: peer {leader}")), "{output}");

    let walkthrough = section(&output, "=== 2.");
    assert_eq!(
        after_line(walkthrough, "$ echo \"hello mesh\" | nc"),
        Some("hello mesh"),
        "{output}"
    );
    let dataplanes = must_single_table(walkthrough, "$ kumactl inspect dataplanes --wide");
    must_be_both_dataplanes_online_with_a_peer(&dataplanes, &output);

    let kill = section(&output, "=== 3.");
    assert!(kill.contains(&format!("Kill the leader (peer {leader})")), "{output}");
    assert!(kill.contains("$ kill -9 "), "{output}");
    assert!(
        kill.lines().any(|l| l.starts_with("still echoing ") && l.contains("ms after the kill")),
        "no echo right after the kill:\n{output}"
    );
    let elected = kill
        .lines()
        .find_map(|l| l.strip_prefix("new leader: peer "))
        .unwrap_or_else(|| panic!("no new leader line:\n{output}"));
    let new_leader: u64 = number_before(elected, ",");
    assert_ne!(new_leader, leader, "{output}");
    let elected_ms: u64 = number_before(elected.split_once("elected ").map_or("", |s| s.1), " ms");
    assert!(elected_ms < 10_000, "an election of {elected_ms} ms:\n{output}");
    let after_kill = must_single_table(kill, "$ kumactl inspect control-planes");
    assert_eq!(leader_of(&after_kill), Some(new_leader), "{output}");

    let write = section(&output, "=== 4.");
    assert!(write.contains("(a follower: it forwards the write to the new leader)"), "{output}");
    assert!(write.lines().any(|l| l.starts_with("accepted in ")), "{output}");
    let permissions = must_single_table(write, "$ kumactl get traffic-permissions");
    assert!(permissions.iter().any(|row| row.contains(&"after-failover".to_string())), "{output}");
    assert_eq!(after_line(write, "$ echo \"hello again\" | nc"), Some("hello again"), "{output}");
    let dataplanes = must_single_table(write, "$ kumactl inspect dataplanes --wide");
    must_be_both_dataplanes_online_with_a_peer(&dataplanes, &output);

    let restart = section(&output, "=== 5.");
    assert!(restart.contains(&format!("Restart peer {leader}")), "{output}");
    assert!(restart.contains(&format!("peer {leader} caught up (applied index ")), "{output}");
    let own_copy = after_line(restart, "$ curl -s ").unwrap_or_default();
    assert!(own_copy.contains("\"name\":\"after-failover\""), "{output}");
    let at_end = must_single_table(restart, "$ kumactl inspect control-planes");
    must_be_three_peers_one_leader(&at_end, &output);
    let column = at_end[0].iter().position(|h| h == "HEALTHY").expect("a HEALTHY column");
    let healthy =
        at_end.iter().skip(1).filter(|row| row.get(column).map(String::as_str) == Some("yes"));
    assert_eq!(healthy.count(), 3, "every peer healthy at the end:\n{output}");

    assert!(output.contains("=== Done in "), "{output}");
    demo.must_have_left_nothing_behind(&output);
}

#[test]
fn the_single_peer_demo_keeps_running_until_ctrl_c_then_stops_everything() {
    let mut demo = DemoRun::start(&["--single"]);
    let so_far = demo.must_print_within("Ctrl-C stops it.", DEMO_DEADLINE);
    assert_eq!(after_line(&so_far, "$ echo \"hello mesh\" | nc"), Some("hello mesh"), "{so_far}");
    let dataplanes = must_single_table(&so_far, "$ kumactl inspect dataplanes");
    let online = dataplanes.iter().filter(|row| row.get(3).map(String::as_str) == Some("Online"));
    assert_eq!(online.count(), 2, "{so_far}");
    assert!(!so_far.contains("kuma-cp raft certs"), "the single peer needs no Raft:\n{so_far}");

    // The script, kuma-cp, kuma-tcp-echo, two kuma-dp and their Envoys: what must all be gone.
    let running = demo.leftovers().len();
    assert!(running >= 7, "only {running} processes of the demo found running:\n{so_far}");

    // What a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
    demo.signal_group(Signal::INT);
    let (status, output) = demo.must_finish_within(Duration::from_secs(30));
    println!("{output}");
    assert_eq!(status.code(), Some(130), "Ctrl-C ends the demo with 130:\n{output}");
    assert!(output.contains("demo: stopped every process it started and removed "), "{output}");
    demo.must_have_left_nothing_behind(&output);
}

/// One run of `.ci/demo`, its output read line by line on a thread.
#[derive(Debug)]
struct DemoRun {
    child: Child,
    lines: Receiver<String>,
    output: String,
    marker: String,
    tmp: tempfile::TempDir,
    _ports: PortBlock,
}

impl DemoRun {
    fn start(args: &[&str]) -> DemoRun {
        let bin_dir = binaries_beside_this_program();
        for binary in ["kuma-cp", "kuma-dp", "kumactl", "kuma-tcp-echo"] {
            assert!(
                bin_dir.join(binary).exists(),
                "{} is missing: build the binaries first (cargo build --workspace --bins)",
                bin_dir.join(binary).display()
            );
        }
        let ports = PortBlock::must_reserve(PORTS_PER_DEMO);
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let marker = format!("{}-{}", std::process::id(), ports.base);
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg("exec .ci/demo \"$@\" 2>&1")
            .arg("demo")
            .args(args)
            .arg("--port-base")
            .arg(ports.base.to_string())
            .current_dir(root)
            .env("KUMA_DEMO_BIN_DIR", &bin_dir)
            .env("TMPDIR", tmp.path())
            .env("KUMA_DEMO_TEST_RUN", &marker)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash runs .ci/demo");
        let stdout = child.stdout.take().expect("the demo's stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        DemoRun { child, lines, output: String::new(), marker, tmp, _ports: ports }
    }

    /// Reads output until a line contains `text`; returns all output so far.
    fn must_print_within(&mut self, text: &str, deadline: Duration) -> String {
        let start = Instant::now();
        while let Some(left) = deadline.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if found {
                        return self.output.clone();
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the demo ended before printing {text:?}:\n{}", self.output)
                }
            }
        }
        self.stop_after_failure();
        panic!("no {text:?} within {deadline:?}:\n{}", self.output)
    }

    /// Waits for the demo to exit; returns its status and whole output.
    fn must_finish_within(&mut self, deadline: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        let mut exited: Option<(ExitStatus, Instant)> = None;
        while start.elapsed() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("the demo's exit status");
                    return (status, self.output.clone());
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Output still open after the exit: something it started holds it (checked later).
            match exited {
                Some((status, at)) if at.elapsed() > Duration::from_secs(1) => {
                    return (status, self.output.clone());
                }
                Some(_) => {}
                None => {
                    exited = self.child.try_wait().ok().flatten().map(|s| (s, Instant::now()));
                }
            }
        }
        self.stop_after_failure();
        panic!("the demo did not end within {deadline:?}:\n{}", self.output)
    }

    fn signal_group(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child pid");
        kill_process_group(pid, signal).expect("the demo's process group exists");
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child pid");
        kill_process(pid, signal).expect("the demo is running");
    }

    /// Lets the demo's own trap clean up, then kills whatever is left.
    fn stop_after_failure(&mut self) {
        self.signal(Signal::TERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.leftovers() {
            let _ = kill_process(pid, Signal::KILL);
        }
    }

    /// Processes started by this run (they carry its marker, or name its TMPDIR) still alive.
    fn leftovers(&self) -> Vec<Pid> {
        let marker = format!("KUMA_DEMO_TEST_RUN={}", self.marker);
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        let Ok(proc_dir) = std::fs::read_dir("/proc") else { return found };
        for entry in proc_dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let read = |file: &str| std::fs::read(entry.path().join(file)).unwrap_or_default();
            let environ = String::from_utf8_lossy(&read("environ")).into_owned();
            let cmdline = String::from_utf8_lossy(&read("cmdline")).into_owned();
            let ours = environ.split('\0').any(|v| v == marker) || cmdline.contains(&tmp);
            if ours && pid != std::process::id() as i32 {
                found.extend(Pid::from_raw(pid));
            }
        }
        found
    }

    fn must_have_left_nothing_behind(&self, output: &str) {
        // The demo waits for what it stopped; a grandchild killed last may take a moment to go.
        let start = Instant::now();
        let mut left = self.leftovers();
        while !left.is_empty() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(50));
            left = self.leftovers();
        }
        let described: Vec<String> = left
            .iter()
            .map(|pid| {
                let path = format!("/proc/{}/cmdline", pid.as_raw_nonzero());
                let cmdline = std::fs::read(path).unwrap_or_default();
                format!("{}: {}", pid.as_raw_nonzero(), String::from_utf8_lossy(&cmdline))
            })
            .collect();
        for pid in left {
            let _ = kill_process(pid, Signal::KILL);
        }
        assert!(described.is_empty(), "left running: {described:?}\n{output}");
        let files: Vec<PathBuf> = std::fs::read_dir(self.tmp.path())
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(files.is_empty(), "left in TMPDIR: {files:?}\n{output}");
    }
}

impl Drop for DemoRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop_after_failure();
        }
    }
}

/// Where cargo put this test's binary's siblings: the target directory's `debug`.
fn binaries_beside_this_program() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.parent().expect("the target directory").to_path_buf()
    } else {
        dir
    }
}

/// A block of consecutive ports, reserved against the other test processes with the claim files
/// of `kuma-test-support`'s `free_port` (same directory). Blocks come from a range of their own,
/// below `free_port`'s 16000-32000: that range fills with claims in a full test run, and 34 free
/// ports in a row are rarely left there (regression: the demo tests failed to find any).
#[derive(Debug)]
struct PortBlock {
    base: u16,
    claims: Vec<PathBuf>,
}

impl PortBlock {
    const FIRST: u16 = 10_000;
    const LAST: u16 = 16_000;

    fn must_reserve(len: u16) -> PortBlock {
        let dir = std::env::temp_dir().join("kuma-rs-test-ports");
        std::fs::create_dir_all(&dir).expect("the port claims directory");
        let seed = RandomState::new();
        for attempt in 0u64..500 {
            let mut hasher = seed.build_hasher();
            hasher.write_u64(attempt);
            hasher.write_u32(std::process::id());
            let base =
                Self::FIRST + (hasher.finish() % u64::from(Self::LAST - len - Self::FIRST)) as u16;
            let mut block = PortBlock { base, claims: Vec::new() };
            let all_claimed = (base..base + len).all(|port| {
                let file = dir.join(port.to_string());
                let free = TcpListener::bind(("0.0.0.0", port)).is_ok()
                    && std::fs::OpenOptions::new().write(true).create_new(true).open(&file).is_ok();
                if free {
                    block.claims.push(file);
                }
                free
            });
            if all_claimed {
                return block;
            }
        }
        panic!("no {len} consecutive free ports between {} and {}", Self::FIRST, Self::LAST)
    }
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        for claim in &self.claims {
            let _ = std::fs::remove_file(claim);
        }
    }
}

/// The text from the line starting with `header` to the next step header (empty without one).
fn section<'a>(output: &'a str, header: &str) -> &'a str {
    let Some(start) = output.find(&format!("\n{header}")).map(|i| i + 1) else { return "" };
    let rest = &output[start..];
    let end = rest.find("\n=== ").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// The line right after the first line starting with `command`.
fn after_line<'a>(text: &'a str, command: &str) -> Option<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(command));
    lines.next()?;
    lines.next()
}

/// The table printed after the one line that starts with `command` (and not with more flags):
/// the header, then the lines aligned with its columns; each split on whitespace.
fn must_single_table(text: &str, command: &str) -> Vec<Vec<String>> {
    let is_command = |l: &&str| l.starts_with(command) && !l[command.len()..].starts_with(" --");
    assert_eq!(text.lines().filter(is_command).count(), 1, "one {command:?} expected in:\n{text}");
    let mut lines = text.lines().skip_while(|l| !is_command(l)).skip(1);
    let header = lines.next().unwrap_or_default();
    // Columns start after a run of two or more spaces; a row has a space before each of them.
    let starts: Vec<usize> = (2..header.len())
        .filter(|&i| &header[i - 2..i] == "  " && header.as_bytes()[i] != b' ')
        .collect();
    let aligned = |l: &&str| {
        !l.trim().is_empty() && starts.iter().all(|&s| l.len() <= s || l.as_bytes()[s - 1] == b' ')
    };
    let mut rows = vec![header.split_whitespace().map(str::to_string).collect::<Vec<_>>()];
    rows.extend(
        lines.take_while(aligned).map(|l| l.split_whitespace().map(str::to_string).collect()),
    );
    assert!(rows.len() > 1, "no table after {command:?} in:\n{text}");
    rows
}

/// Checks an `inspect control-planes` table: peers 1, 2 and 3, exactly one marked leader; returns it.
fn must_be_three_peers_one_leader(table: &[Vec<String>], output: &str) -> u64 {
    let column = leader_column(table).unwrap_or_else(|| panic!("no LEADER column:\n{output}"));
    let ids: HashSet<&str> =
        table.iter().skip(1).filter_map(|r| r.first().map(String::as_str)).collect();
    assert_eq!(ids, HashSet::from(["1", "2", "3"]), "{output}");
    let leaders = table.iter().skip(1).filter(|r| r.get(column).map(String::as_str) == Some("yes"));
    assert_eq!(leaders.count(), 1, "exactly one leader:\n{output}");
    leader_of(table).unwrap_or_else(|| panic!("no leader:\n{output}"))
}

/// Where the LEADER column is, by its header.
fn leader_column(table: &[Vec<String>]) -> Option<usize> {
    table.first()?.iter().position(|h| h == "LEADER")
}

fn leader_of(table: &[Vec<String>]) -> Option<u64> {
    let column = leader_column(table)?;
    let leader = table.iter().skip(1).find(|r| r.get(column).map(String::as_str) == Some("yes"))?;
    leader.first()?.parse().ok()
}

/// Checks an `inspect dataplanes --wide` table: both dataplanes Online, each with its peer.
fn must_be_both_dataplanes_online_with_a_peer(table: &[Vec<String>], output: &str) {
    assert_eq!(table[0].last().map(String::as_str), Some("PLANE"), "{output}");
    for name in ["backend-1", "redis-1"] {
        let row = table
            .iter()
            .find(|r| r.get(1).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no {name}:\n{output}"));
        assert_eq!(row.get(3).map(String::as_str), Some("Online"), "{output}");
        assert!(row.last().is_some_and(|cp| cp.contains(':')), "{name} has no peer:\n{output}");
    }
}

/// The number that `text` starts with, up to `end`.
fn number_before(text: &str, end: &str) -> u64 {
    let number = text.split(end).next().unwrap_or_default().trim();
    number.parse().unwrap_or_else(|_| panic!("{number:?} (from {text:?}) is not a number"))
}
