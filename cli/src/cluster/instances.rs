//! `PostgresInstances`: what `kumactl inspect control-planes` shows of control planes that share
//! a PostgreSQL database (`GET /status/raft` answering with `store: postgres`): the instances,
//! by id, and which one holds the leader lease. They are no Raft cluster: there are no voters,
//! terms or failure tolerance to show.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::cells;
use crate::error::CliError;
use crate::table::Table;

/// The value of `store` that marks an answer of PostgreSQL-backed control planes.
const STORE: &str = "postgres";

/// The instances sharing the database, as the asked one sees them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PostgresInstances {
    /// The instance that answered.
    #[serde(default)]
    pub this_instance: String,
    /// The holder of the leader lease, if any.
    pub leader_instance: Option<String>,
    #[serde(default)]
    pub instances: Vec<Instance>,
}

/// One instance registered in the database.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Instance {
    pub id: String,
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub xds_address: String,
    pub started_at: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Seen within the last few heartbeats.
    #[serde(default)]
    pub alive: bool,
    /// Holds the leader lease.
    #[serde(default)]
    pub leader: bool,
}

impl PostgresInstances {
    /// Whether `answer` is one of PostgreSQL-backed control planes rather than a Raft cluster's.
    pub(crate) fn is_answer(answer: &Value) -> bool {
        answer.get("store").and_then(Value::as_str) == Some(STORE)
    }

    /// Reads an answer for which [`PostgresInstances::is_answer`] holds.
    pub(crate) fn from_answer(answer: &Value) -> Result<PostgresInstances, CliError> {
        serde_json::from_value(answer.clone()).map_err(|e| CliError::UnexpectedAnswer {
            what: "the control planes on PostgreSQL".to_string(),
            reason: e.to_string(),
        })
    }

    /// One row per instance, by when it started; ages are as of `now`.
    pub(crate) fn table(&self, now: DateTime<Utc>) -> Table {
        let mut table =
            Table::new(["INSTANCE", "API", "XDS", "LEADER", "HEALTHY", "STARTED", "LAST SEEN"]);
        for instance in self.sorted() {
            table.push([
                instance.id.clone(),
                or_dash(&instance.api_url),
                or_dash(&instance.xds_address),
                yes_no(instance.leader),
                yes_no(instance.alive),
                cells::ago(instance.started_at, now),
                cells::ago(instance.last_seen, now),
            ]);
        }
        table
    }

    /// "N instances on PostgreSQL, M alive; ...": how many there are and who holds the lease.
    pub(crate) fn summary_line(&self) -> String {
        let count = self.instances.len();
        let alive = self.instances.iter().filter(|i| i.alive).count();
        let noun = if count == 1 { "instance" } else { "instances" };
        let lease = match &self.leader_instance {
            Some(holder) => format!("the leader lease is held by {holder}"),
            None => "no instance holds the leader lease now: one takes it within seconds, \
                     and the leader-only work waits until then"
                .to_string(),
        };
        format!("{count} {noun} on PostgreSQL, {alive} alive; {lease}")
    }

    /// Prints the table and the summary line.
    pub(crate) fn print(&self, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        write!(out, "{}", self.table(now))?;
        writeln!(out)?;
        writeln!(out, "{}", self.summary_line())?;
        Ok(())
    }

    fn sorted(&self) -> Vec<&Instance> {
        let mut instances: Vec<&Instance> = self.instances.iter().collect();
        instances.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        instances
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() { "-" } else { text }.to_string()
}

fn yes_no(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-12-03T02:00:00Z".parse().unwrap()
    }

    fn instance(id: &str, started: &str, seen: &str, alive: bool, leader: bool) -> Value {
        json!({
            "id": id, "apiUrl": format!("http://{id}1"), "xdsAddress": format!("{id}8"),
            "startedAt": started, "lastSeen": seen, "alive": alive, "leader": leader,
        })
    }

    fn answer() -> Value {
        json!({
            "store": "postgres", "thisInstance": "cp-a:567", "leaderInstance": "cp-b:567",
            "instances": [
                instance("cp-b:567", "2026-12-03T01:57:00Z", "2026-12-03T01:59:59Z", true, true),
                instance("cp-a:567", "2026-12-02T23:00:00Z", "2026-12-03T01:59:58Z", true, false),
                instance("cp-c:567", "2026-12-03T01:59:00Z", "2026-12-03T01:59:40Z", false, false),
            ]
        })
    }

    #[test]
    fn every_instance_is_a_row_by_start_with_the_lease_holder_and_ages() {
        let answer = answer();
        assert!(PostgresInstances::is_answer(&answer));
        let instances = PostgresInstances::from_answer(&answer).unwrap();
        let mut out = Vec::new();
        instances.print(now(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "INSTANCE   API                XDS         LEADER   HEALTHY   STARTED   LAST SEEN\n\
             cp-a:567   http://cp-a:5671   cp-a:5678   no       yes       3h        2s\n\
             cp-b:567   http://cp-b:5671   cp-b:5678   yes      yes       3m        1s\n\
             cp-c:567   http://cp-c:5671   cp-c:5678   no       no        1m        20s\n\
             \n\
             3 instances on PostgreSQL, 2 alive; the leader lease is held by cp-b:567\n"
        );
    }

    #[test]
    fn without_a_lease_holder_the_summary_says_the_work_waits() {
        let answer = json!({
            "store": "postgres", "thisInstance": "cp-a:567", "leaderInstance": null,
            "instances": [
                instance("cp-a:567", "2026-12-03T01:59:00Z", "2026-12-03T01:59:59Z", true, false)
            ]
        });
        let line = PostgresInstances::from_answer(&answer).unwrap().summary_line();
        assert!(line.starts_with("1 instance on PostgreSQL, 1 alive; no instance holds"), "{line}");
    }

    #[test]
    fn a_raft_cluster_answer_is_not_one_of_postgres_instances() {
        assert!(!PostgresInstances::is_answer(&json!({"this": 1, "leader": 1, "members": []})));
        assert!(!PostgresInstances::is_answer(&json!({"store": "raft"})));
    }

    #[test]
    fn an_answer_that_is_not_a_list_of_instances_names_what_was_read() {
        let err = PostgresInstances::from_answer(&json!({"store": "postgres", "instances": 3}))
            .unwrap_err();
        assert!(err.to_string().contains("control planes on PostgreSQL"), "{err}");
    }
}
