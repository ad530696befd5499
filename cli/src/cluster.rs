//! `kumactl inspect control-planes` and `kumactl raft add-peer|remove-peer|transfer-leader`: the
//! Raft cluster of control planes, read through `GET /status/raft` and changed through
//! `/status/raft/peers` and `/status/raft/transfer-leader`.
//!
//! `ClusterStatus` is kumactl's own reading of the answer, only the fields it shows, so that
//! kumactl never links the Raft crate; `-o yaml|json` prints the answer exactly as it came.
//! Control planes sharing a PostgreSQL database answer the same request in a shape of their own
//! (`store: postgres`), which `instances::PostgresInstances` reads.

mod instances;

use std::io::Write;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::args::OutputFormat;
use crate::client::{ApiClient, ClientError};
use crate::error::CliError;
use crate::output::print_value;
use crate::table::Table;
use instances::PostgresInstances;

/// `GET` here is the cluster as the asked peer sees it.
const STATUS: [&str; 2] = ["status", "raft"];
/// `POST` here adds a peer, `DELETE` below it (`/{id}`) removes one.
const PEERS: [&str; 3] = ["status", "raft", "peers"];
/// `POST {"to": ID}` here hands leadership to that voter.
const TRANSFER: [&str; 3] = ["status", "raft", "transfer-leader"];

/// The cluster as one peer sees it (`GET /status/raft`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterStatus {
    /// The peer that answered.
    pub this: u64,
    /// The leader it knows of, if any.
    pub leader: Option<u64>,
    #[serde(default)]
    pub members: Vec<Member>,
    /// How many voters may fail now with a majority left.
    #[serde(default)]
    pub failure_tolerance: usize,
}

/// One member of the cluster's membership.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Member {
    pub id: u64,
    pub raft_address: String,
    /// `voter` or `learner`.
    #[serde(default)]
    pub membership: String,
    #[serde(default)]
    pub healthy: bool,
    /// Entries it trails the leader by, when both answered.
    pub lag: Option<u64>,
    /// Its own account, when it answered the asked peer.
    pub status: Option<PeerStatus>,
    /// What it serves, once its announcement was replicated.
    pub serves: Option<Serves>,
}

/// A member's own account of itself.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerStatus {
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub term: u64,
    pub last_applied_index: Option<u64>,
    /// On a follower: how long ago it last heard from the leader.
    pub millis_since_leader_contact: Option<u64>,
    /// Bytes its Raft data takes on disk.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Why it cannot do its part now (a full disk, lost data being rejoined).
    pub problem: Option<String>,
}

/// The addresses a member announced.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Serves {
    pub xds_address: String,
    pub api_url: String,
}

impl ClusterStatus {
    /// Reads an answer of the cluster status API.
    pub(crate) fn from_answer(answer: &Value) -> Result<ClusterStatus, CliError> {
        serde_json::from_value(answer.clone()).map_err(|e| CliError::UnexpectedAnswer {
            what: "the cluster status".to_string(),
            reason: e.to_string(),
        })
    }

    /// One row per member, by id.
    pub(crate) fn table(&self) -> Table {
        let mut table = Table::new([
            "ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "LAG", "CONTACT", "DISK", "LEADER",
            "HEALTHY", "XDS", "API",
        ]);
        let mut members: Vec<&Member> = self.members.iter().collect();
        members.sort_by_key(|m| m.id);
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
        for member in members {
            let status = member.status.as_ref();
            let serves = member.serves.as_ref();
            table.push([
                member.id.to_string(),
                member.raft_address.clone(),
                or_dash(status.map(|s| s.role.clone())),
                or_dash(status.map(|s| s.term.to_string())),
                or_dash(status.and_then(|s| s.last_applied_index).map(|i| i.to_string())),
                or_dash(member.lag.map(|l| l.to_string())),
                or_dash(status.and_then(|s| s.millis_since_leader_contact).map(human_millis)),
                or_dash(status.map(|s| human_bytes(s.disk_bytes))),
                yes_no(self.leader == Some(member.id)),
                yes_no(member.healthy),
                or_dash(serves.map(|s| s.xds_address.clone())),
                or_dash(serves.map(|s| s.api_url.clone())),
            ]);
        }
        table
    }

    /// Prints the table, how many peers may fail, each peer's problem, and for a peer that is in
    /// no cluster yet, what to do about it.
    fn print(&self, out: &mut dyn Write) -> Result<(), CliError> {
        write!(out, "{}", self.table())?;
        if !self.members.is_empty() {
            writeln!(out)?;
            writeln!(out, "{}", self.tolerance_line())?;
        }
        let mut members: Vec<&Member> = self.members.iter().collect();
        members.sort_by_key(|m| m.id);
        for member in members {
            if let Some(lag) = member.lag.filter(|l| *l > 0) {
                writeln!(out, "peer {} trails the leader by {lag} entries", member.id)?;
            }
            if let Some(problem) = member.status.as_ref().and_then(|s| s.problem.as_ref()) {
                writeln!(out, "peer {}: {problem}", member.id)?;
            }
        }
        if self.members.is_empty() {
            writeln!(out)?;
            writeln!(
                out,
                "peer {id} is not a member of a cluster yet: it waits to be added with \
                 kumactl raft add-peer --id {id} --address HOST:PORT, run against a member",
                id = self.this
            )?;
        }
        Ok(())
    }

    /// What `add-peer` prints: the confirmation, the table, and a warning when the new peer does
    /// not answer the status request: it counts as a voter all the same. (The API adds only a
    /// peer that caught up, so this is a peer that stopped right after.)
    fn print_added(&self, id: u64, address: &str, out: &mut dyn Write) -> Result<(), CliError> {
        writeln!(out, "added peer {id} ({address}) to the cluster as a voter")?;
        self.print(out)?;
        let silent = self.members.iter().any(|m| m.id == id && !m.healthy);
        if silent {
            writeln!(out)?;
            writeln!(
                out,
                "peer {id} does not answer at {address}: until it does, it counts as a voter \
                 that is down. Start its kuma-cp there with KUMA_STORE_RAFT_NODE_ID={id} and \
                 KUMA_STORE_RAFT_JOIN=true, or take it out with kumactl raft remove-peer --id {id}"
            )?;
        }
        Ok(())
    }
}

impl ClusterStatus {
    /// "failure tolerance: N (...)": how many peers may fail now.
    fn tolerance_line(&self) -> String {
        let voters = self.members.iter().filter(|m| m.membership == "voter").count();
        match self.failure_tolerance {
            0 => format!(
                "failure tolerance: 0 of {voters} voters may fail now: one more failure \
                 stops every write"
            ),
            n => format!("failure tolerance: {n} of {voters} voters may fail now"),
        }
    }
}

/// `raft transfer-leader --to ID`: returns once the peer leads.
pub(crate) async fn transfer_leader(
    client: &ApiClient,
    to: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let answer = match client.post(&TRANSFER, &json!({ "to": to })).await {
        Ok(answer) => answer,
        Err(e) => return Err(membership_error(client, e).await),
    };
    let status = ClusterStatus::from_answer(&answer)?;
    writeln!(out, "peer {to} leads the cluster now")?;
    status.print(out)
}

/// `1.2s`, `340ms`, `3m5s`: a duration as people read it.
fn human_millis(millis: u64) -> String {
    match millis {
        0..1_000 => format!("{millis}ms"),
        1_000..60_000 => format!("{:.1}s", millis as f64 / 1000.0),
        _ => format!("{}m{}s", millis / 60_000, millis % 60_000 / 1000),
    }
}

/// `12KiB`, `3.4MiB`: no space, so a table row splits on whitespace.
fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes}B")
    } else if b < KIB * KIB {
        format!("{:.0}KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1}MiB", b / KIB / KIB)
    } else {
        format!("{:.1}GiB", b / KIB / KIB / KIB)
    }
}

fn yes_no(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_string()
}

/// `inspect control-planes [-o table|yaml|json]`: a Raft cluster's peers, or the instances
/// sharing a PostgreSQL database.
pub(crate) async fn inspect_control_planes(
    client: &ApiClient,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let answer = client.get(&STATUS).await.map_err(|e| not_replicated(client, e))?;
    match format {
        OutputFormat::Table if PostgresInstances::is_answer(&answer) => {
            PostgresInstances::from_answer(&answer)?.print(chrono::Utc::now(), out)
        }
        OutputFormat::Table => ClusterStatus::from_answer(&answer)?.print(out),
        format => print_value(out, format, &answer),
    }
}

/// `raft add-peer --id ID --address HOST:PORT`: returns once the leader made the peer a voter.
pub(crate) async fn add_peer(
    client: &ApiClient,
    id: u64,
    address: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let request = json!({"id": id, "raftAddress": address});
    let answer = match client.post(&PEERS, &request).await {
        Ok(answer) => answer,
        Err(e) => return Err(membership_error(client, e).await),
    };
    ClusterStatus::from_answer(&answer)?.print_added(id, address, out)
}

/// `raft remove-peer --id ID`.
pub(crate) async fn remove_peer(
    client: &ApiClient,
    id: u64,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let id_text = id.to_string();
    let mut segments = PEERS.to_vec();
    segments.push(&id_text);
    let answer = match client.delete_for_answer(&segments).await {
        Ok(answer) => answer,
        Err(e) => return Err(membership_error(client, e).await),
    };
    let status = ClusterStatus::from_answer(&answer)?;
    writeln!(out, "removed peer {id} from the cluster; its id can never be used again")?;
    status.print(out)
}

/// A 404 for the cluster status means the control plane has no cluster (the memory store).
fn not_replicated(client: &ApiClient, e: ClientError) -> CliError {
    if e.is_not_found() {
        CliError::NotReplicated { url: client.base_url().to_string() }
    } else {
        e.into()
    }
}

/// A 404 for a membership change is either a control plane with no cluster or one whose API
/// does not change it (read-only); the status API tells them apart. Refusals (400) and "no
/// leader" (503) are the API's own errors and are printed as they came.
async fn membership_error(client: &ApiClient, e: ClientError) -> CliError {
    if !e.is_not_found() {
        return e.into();
    }
    match client.get(&STATUS).await {
        Ok(_) => CliError::MembershipReadOnly { url: client.base_url().to_string() },
        Err(status_error) if status_error.is_not_found() => not_replicated(client, status_error),
        Err(_) => e.into(),
    }
}

#[cfg(test)]
mod tests;
