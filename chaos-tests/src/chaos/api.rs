//! The chaos tests' client of kuma-cp's HTTP API. A register is a TrafficPermission in mesh
//! `default` whose only source service is `w-<value>`; nothing else (no Dataplane) refers to it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::chaos::history::Outcome;

/// Where every register lives.
const MESH: &str = "default";
/// Registers' names start with this, so the final comparison ignores other policies.
pub const REGISTER_PREFIX: &str = "chaos-";

/// What a peer said on `GET /status/raft`, as far as the chaos tests care.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// The answering peer's node id.
    pub this: u64,
    pub leader: Option<u64>,
    pub term: u64,
    /// The answering peer's own role (`Leader`, `Follower`, `Learner`, `Shutdown`, ...).
    pub role: Option<String>,
    /// Every member as this peer sees it.
    pub members: Vec<MemberView>,
    /// What the answering peer says is wrong with it (e.g. a full disk), one line each.
    pub problems: Vec<String>,
}

impl RaftStatus {
    /// The member with Raft id `id`.
    pub fn member(&self, id: u64) -> Option<&MemberView> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// One member in a peer's `GET /status/raft`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    /// It answered the asking peer.
    pub healthy: bool,
    /// Its last applied index, when it answered.
    pub applied: Option<u64>,
    /// A voter (not a learner) of the membership.
    pub voter: bool,
    /// It announced what it serves (the replicated state has its addresses).
    pub announced: bool,
}

/// A client without connection reuse: every request opens its own connection, so a refused
/// connection always means that the request was never sent.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
}

impl Default for ApiClient {
    fn default() -> Self {
        ApiClient::new()
    }
}

impl ApiClient {
    pub fn new() -> ApiClient {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        ApiClient { http }
    }

    fn register_url(port: u16, key: &str) -> String {
        format!("http://127.0.0.1:{port}/meshes/{MESH}/traffic-permissions/{key}")
    }

    /// `PUT` the register `key` to `value` through the peer at `port`.
    pub async fn write(&self, port: u16, key: &str, value: u64, timeout: Duration) -> Outcome {
        let body = serde_json::json!({
            "type": "TrafficPermission",
            "mesh": MESH,
            "name": key,
            "sources": [{"match": {"service": format!("w-{value}")}}],
            "destinations": [{"match": {"service": "*"}}],
        });
        let sent =
            self.http.put(Self::register_url(port, key)).json(&body).timeout(timeout).send().await;
        match sent {
            Ok(response) => match response.status().as_u16() {
                200 | 201 => Outcome::Written,
                // Answers that say the write was not applied: invalid, a missing mesh, a
                // concurrent change between the peer's read and its compare-and-set.
                status @ (400 | 404 | 409 | 412) => Outcome::Failed(status.to_string()),
                // 503 (no leader in time) and anything else: it may still be applied.
                status => Outcome::Unknown(status.to_string()),
            },
            Err(e) => classify(&e),
        }
    }

    /// A consistent `GET` of the register `key` through the peer at `port`.
    pub async fn read(&self, port: u16, key: &str, timeout: Duration) -> Outcome {
        self.read_with(port, key, timeout, false).await
    }

    /// A `GET` of the register `key`; `stale` reads the peer's own replica
    /// (`?consistency=stale`), which is not linearizable: only to show that the checks catch it.
    pub async fn read_with(&self, port: u16, key: &str, timeout: Duration, stale: bool) -> Outcome {
        let mut url = Self::register_url(port, key);
        if stale {
            url.push_str("?consistency=stale");
        }
        let sent = self.http.get(url).timeout(timeout).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return classify(&e),
        };
        match response.status().as_u16() {
            200 => match response.json::<serde_json::Value>().await {
                Ok(body) => match register_value(&body) {
                    Some(value) => Outcome::Read(Some(value)),
                    None => Outcome::Unknown(format!("a 200 without a register value: {body}")),
                },
                Err(e) => Outcome::Unknown(format!("body: {e}")),
            },
            404 => Outcome::Read(None),
            status => Outcome::Failed(status.to_string()),
        }
    }

    /// `GET /status/raft` of the peer at `port`.
    pub async fn raft_status(&self, port: u16, timeout: Duration) -> Result<RaftStatus, String> {
        let url = format!("http://127.0.0.1:{port}/status/raft");
        let body: serde_json::Value = self.get_json(&url, timeout).await?;
        let this = body["this"].as_u64().ok_or_else(|| format!("no `this` in {body}"))?;
        let all = body["members"].as_array().map(Vec::as_slice).unwrap_or_default();
        let members = all
            .iter()
            .map(|m| MemberView {
                id: m["id"].as_u64().unwrap_or_default(),
                healthy: m["healthy"].as_bool().unwrap_or_default(),
                applied: m["status"]["lastAppliedIndex"].as_u64(),
                voter: m["membership"].as_str() == Some("voter"),
                announced: !m["serves"].is_null(),
            })
            .collect();
        let own = all.iter().find(|m| m["id"].as_u64() == Some(this)).map(|m| &m["status"]);
        let mut problems = problems_in(&body);
        problems.extend(own.map(problems_in).unwrap_or_default());
        Ok(RaftStatus {
            this,
            leader: body["leader"].as_u64(),
            term: body["term"].as_u64().unwrap_or_default(),
            role: own.and_then(|s| s["role"].as_str()).map(str::to_string),
            members,
            problems,
        })
    }

    /// The admin token that `kuma-cp` made at its first start, as a user on the peer's own host
    /// reads it (`GET /tokens/admin` over loopback).
    pub async fn admin_token(&self, port: u16, timeout: Duration) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{port}/tokens/admin");
        let response = self
            .http
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status}: {body}"));
        }
        Ok(body.trim().to_string())
    }

    /// `POST /status/raft/transfer-leader {"to": to}` to the peer at `port` as an admin: the
    /// answer's status code and body.
    pub async fn transfer_leader(
        &self,
        port: u16,
        to: u64,
        token: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let url = format!("http://127.0.0.1:{port}/status/raft/transfer-leader");
        let response = self
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({ "to": to }))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    /// Whether a consistent `GET` of `path` answers 200 through the peer at `port`.
    pub async fn exists(&self, port: u16, path: &str, timeout: Duration) -> bool {
        let url = format!("http://127.0.0.1:{port}{path}");
        matches!(
            self.http.get(url).timeout(timeout).send().await,
            Ok(response) if response.status().is_success()
        )
    }

    /// Every register as the peer at `port` holds it right now (`?consistency=stale`): name to
    /// the whole resource as the API returns it (spec, creation and modification times).
    pub async fn registers(
        &self,
        port: u16,
        timeout: Duration,
    ) -> Result<BTreeMap<String, serde_json::Value>, String> {
        let mut registers = BTreeMap::new();
        let mut url = format!(
            "http://127.0.0.1:{port}/meshes/{MESH}/traffic-permissions?consistency=stale&size=1000"
        );
        // Bounded: a page holds 1000 registers and a run writes far fewer than 100 pages.
        for _ in 0..100 {
            let page = self.get_json(&url, timeout).await?;
            for item in page["items"].as_array().into_iter().flatten() {
                let name = item["name"].as_str().unwrap_or_default();
                if name.starts_with(REGISTER_PREFIX) {
                    registers.insert(name.to_string(), item.clone());
                }
            }
            match page["next"].as_str() {
                // The next page on this peer, whatever host the link names.
                Some(next) => {
                    let path = next
                        .find("/meshes/")
                        .map(|at| &next[at..])
                        .ok_or_else(|| format!("a next link without a path: {next}"))?;
                    url = format!("http://127.0.0.1:{port}{path}");
                    if !url.contains("consistency=") {
                        url.push_str("&consistency=stale");
                    }
                }
                None => return Ok(registers),
            }
        }
        Err("more than 100 pages of registers".to_string())
    }

    async fn get_json(&self, url: &str, timeout: Duration) -> Result<serde_json::Value, String> {
        let response = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}: {body}"))
    }
}

/// What a status object says is wrong: `diskFull: true`, `problem: "..."`, `problems: [...]`.
fn problems_in(status: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    if status["diskFull"].as_bool() == Some(true) {
        problems.push("diskFull".to_string());
    }
    if let Some(problem) = status["problem"].as_str() {
        problems.push(problem.to_string());
    }
    for problem in status["problems"].as_array().into_iter().flatten() {
        problems.push(problem.as_str().map_or_else(|| problem.to_string(), str::to_string));
    }
    problems
}

/// The value of a register as the API returns it.
pub fn register_value(resource: &serde_json::Value) -> Option<u64> {
    resource["sources"][0]["match"]["service"].as_str()?.strip_prefix("w-")?.parse().ok()
}

/// A request that could not be completed: refused before it was sent is a definite failure;
/// anything after that (a timeout, a reset) leaves the outcome unknown.
fn classify(error: &reqwest::Error) -> Outcome {
    if error.is_connect() {
        Outcome::Failed("not connected".to_string())
    } else if error.is_timeout() {
        Outcome::Unknown("timeout".to_string())
    } else {
        Outcome::Unknown(format!("{error}"))
    }
}
