//! The web GUI in a real headless browser (Debian's chromium-headless-shell): against a 3-peer
//! Raft cluster with a dataplane online through kuma-dp and Envoy and one that never connected,
//! the page lists the dataplanes with their status, the peer holding the online one's stream and
//! its matched policies, and the three peers with their Raft role and health, as the API reports
//! them; from the leader and from a follower. Screenshots are kept under the target dir.
//! Without loopback as admin, the page asks for a token and shows the data once given one. On
//! PostgreSQL it shows the instances sharing the database and which one holds the lease. A peer
//! that lost its majority still shows its copy, with the other peers down and no leader. Through
//! the DevTools protocol, in real time: first paint and data are measured, the page refreshes by
//! itself, and it backs off and recovers while its control plane is down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kuma_test_support::{
    bin_path, free_port, http_request, http_request_as, try_poll_until, Chromium, KumaCp,
    KumaCpCluster, Page, PgServer, Proc, PG_DATABASE, PG_PASSWORD, PG_USER,
};
use serde_json::Value;

use crate::support::{dataplane, must_spawn_sidecar, put};

const CONVERGE: Duration = Duration::from_secs(30);
/// Virtual time the page's scripts get per load: its first refresh needs none, later ones run
/// every 5 s.
const BUDGET: Duration = Duration::from_secs(8);

fn must_get(port: u16, path: &str) -> Value {
    let reply = http_request(port, "GET", path, None).expect("the API answers");
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON")
}

/// The control-plane instance holding `name`'s open stream, as the API reports it.
fn connected_instance(port: u16, name: &str) -> Result<String, String> {
    let body = must_get(port, &format!("/meshes/default/dataplanes+insights/{name}"));
    body["dataplaneInsight"]["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["disconnectTime"].is_null() && !s["connectTime"].is_null())
        .and_then(|s| s["controlPlaneInstanceId"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("not connected: {body}"))
}

/// Every `Kind name` the API says applies to dataplane `name`.
fn matched_policies(port: u16, name: &str) -> Vec<String> {
    let body = must_get(port, &format!("/meshes/default/dataplanes/{name}/policies"));
    let mut names = Vec::new();
    let mut add = |policies: &Value| {
        for (kind, chosen) in policies.as_object().into_iter().flatten() {
            names.push(format!("{kind} {}", chosen["name"].as_str().unwrap_or_default()));
        }
    };
    add(&body["policies"]);
    for side in ["inbounds", "outbounds"] {
        for item in body[side].as_array().into_iter().flatten() {
            add(&item["policies"]);
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The `<tr ...>...</tr>` of the page whose opening tag starts with `start`.
fn row<'a>(page: &'a str, start: &str) -> Result<&'a str, String> {
    let from = page.find(start).ok_or_else(|| format!("no row {start}"))?;
    let to = page[from..].find("</tr>").ok_or_else(|| format!("row {start} does not end"))?;
    Ok(&page[from..from + to])
}

/// Loads `url` until the page shows what `check` wants (the API may still be converging).
fn must_show(chromium: &Chromium, url: &str, check: impl Fn(&str) -> Result<(), String>) -> String {
    try_poll_until(CONVERGE, || {
        let page = chromium.dump_dom(url, BUDGET)?;
        check(&page).map(|()| page.clone()).map_err(|e| format!("{e}\n{page}"))
    })
    .unwrap_or_else(|e| panic!("the GUI at {url} never showed it: {e}"))
}

fn must_screenshot(chromium: &Chromium, url: &str, name: &str) -> PathBuf {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gui-{name}.png"));
    chromium.screenshot(url, BUDGET, &file, (1400, 1000)).expect("a screenshot");
    println!("screenshot of {url}: {}", file.display());
    file
}

/// What the page must show, from the API of `port`: the dataplanes with their status, peer and
/// policies, and every member with its role and health.
fn check_page(
    page: &str,
    port: u16,
    online_instance: &str,
    policies: &[String],
) -> Result<(), String> {
    if !page.contains("data-state=\"ready\"") {
        return Err("the page has no data yet".into());
    }
    let web = row(page, "<tr data-dataplane=\"default/web-1\"")?;
    let expected = format!("data-status=\"Online\" data-peer-instance=\"{online_instance}\"");
    if !web.contains(&expected) {
        return Err(format!("web-1 is not shown Online on {online_instance}: {web}"));
    }
    for policy in policies {
        if !web.contains(policy.as_str()) {
            return Err(format!("web-1 does not list its policy {policy}: {web}"));
        }
    }
    let redis = row(page, "<tr data-dataplane=\"default/redis-1\"")?;
    if !redis.contains("data-status=\"Offline\"") {
        return Err(format!("redis-1 is not shown Offline: {redis}"));
    }
    let status = must_get(port, "/status/raft");
    let leader = format!("Leader: peer {}.", status["leader"]);
    if !page.contains(&leader) {
        return Err(format!("the page does not say {leader}"));
    }
    let members = status["members"].as_array().cloned().unwrap_or_default();
    if members.len() != 3 {
        return Err(format!("the API reports {} members", members.len()));
    }
    for member in &members {
        let id = member["id"].as_u64().unwrap_or_default();
        let role = member["status"]["role"].as_str().unwrap_or("unreachable");
        let peer = row(page, &format!("<tr data-peer=\"{id}\""))?;
        let expected = format!("data-role=\"{role}\" data-healthy=\"{}\"", member["healthy"]);
        if !peer.contains(&expected) {
            return Err(format!("peer {id} is not shown as {expected}: {peer}"));
        }
        if member["serves"]["instanceId"].as_str() == Some(online_instance)
            && !web.contains(&format!("peer {id} ({online_instance})"))
        {
            return Err(format!("web-1 does not name peer {id}: {web}"));
        }
    }
    Ok(())
}

#[test]
fn the_gui_in_a_browser_shows_the_dataplanes_and_peers_the_api_reports_from_any_peer() {
    let chromium = Chromium::must_find();
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    let leader = cluster.must_wait_for_leader(CONVERGE);
    let api = cluster.peers[leader].api_port;
    let web_in = free_port();
    put(
        api,
        "/meshes/default/dataplanes/web-1",
        &dataplane("web-1", &format!("127.0.0.1:{web_in}:{}", web_in + 1), "web", None),
    );
    put(
        api,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", "127.0.0.1:16379:6379", "redis", None),
    );
    put(
        api,
        "/meshes/default/traffic-permissions/web-to-all",
        r#"{"type":"TrafficPermission","mesh":"default","name":"web-to-all","sources":[{"match":{"service":"web"}}],"destinations":[{"match":{"service":"*"}}]}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&cluster, leader, "web-1", dir.path());
    let instance = try_poll_until(CONVERGE, || connected_instance(api, "web-1"))
        .unwrap_or_else(|e| panic!("web-1 never connected ({e}):\n{}", sidecar.log()));
    let policies = matched_policies(api, "web-1");
    assert!(!policies.is_empty(), "web-1 matches a policy");

    let url = format!("{}/gui/", cluster.peers[leader].api_url());
    let page = must_show(&chromium, &url, |page| check_page(page, api, &instance, &policies));
    let first_data = page.split("data-first-data=\"").nth(1).and_then(|s| s.split('"').next());
    println!(
        "the leader's GUI had its data {} ms after navigation (virtual time)",
        first_data.unwrap_or("?")
    );
    must_screenshot(&chromium, &url, "leader");

    let follower = (leader + 1) % 3;
    let port = cluster.peers[follower].api_port;
    let url = format!("{}/gui/", cluster.peers[follower].api_url());
    must_show(&chromium, &url, |page| check_page(page, port, &instance, &policies));
    must_screenshot(&chromium, &url, "follower");
}

#[test]
fn without_loopback_as_admin_the_page_asks_for_a_token_and_shows_the_data_with_one() {
    let chromium = Chromium::must_find();
    let cp = KumaCp::builder().env("KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN", "false").must_start();
    let url = format!("{}/gui/", cp.api_url());
    let page = must_show(&chromium, &url, |page| {
        (page.contains("data-state=\"token\"") && page.contains("<form id=\"login\">"))
            .then_some(())
            .ok_or_else(|| "no token prompt".to_string())
    });
    assert!(page.contains("this request needs credentials"), "the API's reason is shown: {page}");

    let token = try_poll_until(CONVERGE, || {
        match http_request(cp.api_port, "GET", "/tokens/admin", None) {
            Ok(r) if r.status == 200 => Ok(r.body.trim().to_string()),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the admin token");
    let meshes = http_request_as(cp.api_port, "GET", "/meshes", None, Some(&token))
        .expect("the API answers");
    assert_eq!(meshes.status, 200, "{}", meshes.body);
    let with_token = format!("{url}#token={token}");
    let page = must_show(&chromium, &with_token, |page| {
        row(page, "<tr data-mesh=\"default\"").map(|_| ())
    });
    assert!(page.contains("data-state=\"ready\""), "{page}");
    assert!(!page.contains(&token), "the token leaves the page's address and DOM");
}

#[test]
fn on_postgresql_the_page_shows_the_instances_and_the_lease_holder() {
    let chromium = Chromium::must_find();
    let pg = PgServer::must_start();
    let env = [
        ("KUMA_STORE_TYPE", "postgres".to_string()),
        ("KUMA_STORE_POSTGRES_HOST", pg.host().to_string()),
        ("KUMA_STORE_POSTGRES_PORT", pg.port().to_string()),
        ("KUMA_STORE_POSTGRES_USER", PG_USER.to_string()),
        ("KUMA_STORE_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("KUMA_STORE_POSTGRES_DB_NAME", PG_DATABASE.to_string()),
        ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "127.0.0.1".to_string()),
    ];
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let migrated = Proc::spawn(&bin_path("kuma-cp"), &["migrate", "up"], &pairs)
        .must_exit_within(Duration::from_secs(30));
    assert_eq!(migrated.code(), Some(0), "{}", migrated.log);
    let builder = env.iter().fold(KumaCp::builder(), |b, (k, v)| b.env(k, v));
    let instances = [builder.clone().must_start(), builder.must_start()];
    let port = instances[1].api_port;
    let status = try_poll_until(CONVERGE, || {
        let status = must_get(port, "/status/raft");
        let alive =
            status["instances"].as_array().into_iter().flatten().filter(|i| i["alive"] == true);
        if alive.count() == 2 && status["leaderInstance"].is_string() {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .unwrap_or_else(|s| panic!("two live instances and a lease holder: {s}"));

    let url = format!("{}/gui/", instances[1].api_url());
    must_show(&chromium, &url, |page| {
        if !page.contains("data-state=\"ready\"") {
            return Err("the page has no data yet".into());
        }
        for instance in status["instances"].as_array().into_iter().flatten() {
            let id = instance["id"].as_str().unwrap_or_default();
            let leader = status["leaderInstance"].as_str() == Some(id);
            let expected =
                format!("<tr data-peer=\"{id}\" data-leader=\"{leader}\" data-healthy=\"true\"");
            row(page, &expected)?;
        }
        Ok(())
    });
    must_screenshot(&chromium, &url, "postgres");
}

#[test]
fn in_real_time_the_page_paints_shows_its_data_and_refreshes_by_itself() {
    let chromium = Chromium::must_find();
    let cp = KumaCp::must_start();
    put(
        cp.api_port,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", "127.0.0.1:16379:6379", "redis", None),
    );
    let mut page = chromium.must_open(&format!("{}/gui/", cp.api_url()));
    let timings = "({data: Number(document.body.dataset.firstData), paint: Number(document.body.dataset.firstPaint)})";
    let shown = try_poll_until(CONVERGE, || match page.evaluate(timings) {
        Ok(t) if t["data"].as_f64().is_some_and(|ms| ms > 0.0) => Ok(t),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("the page never showed its data: {e}"));
    println!(
        "the GUI in real time: first contentful paint {} ms, the data in the page {} ms after navigation",
        shown["paint"], shown["data"]
    );
    let has = |page: &mut Page, name: &str| {
        let selector =
            format!("document.querySelector('tr[data-dataplane=\"default/{name}\"]') !== null");
        page.evaluate(&selector)
    };
    assert_eq!(has(&mut page, "redis-1"), Ok(Value::Bool(true)));

    // A dataplane added now appears within a refresh (every 5 s), with nothing reloaded.
    put(
        cp.api_port,
        "/meshes/default/dataplanes/late-1",
        &dataplane("late-1", "127.0.0.1:16380:6379", "redis", None),
    );
    try_poll_until(Duration::from_secs(15), || match has(&mut page, "late-1") {
        Ok(Value::Bool(true)) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("the page did not refresh by itself: {e}"));
    let first = page.evaluate("Number(document.body.dataset.firstData)").unwrap();
    assert_eq!(first, shown["data"], "the page was not reloaded");
}

#[test]
fn with_its_majority_gone_a_peer_still_shows_its_copy_and_which_peers_are_down() {
    let chromium = Chromium::must_find();
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(CONVERGE);
    let api = cluster.peers[leader].api_port;
    put(
        api,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", "127.0.0.1:16379:6379", "redis", None),
    );
    let survivor = (leader + 1) % 3;
    let port = cluster.peers[survivor].api_port;
    // Replicated to the survivor before the others go.
    try_poll_until(CONVERGE, || {
        let reply =
            http_request(port, "GET", "/meshes/default/dataplanes/redis-1?consistency=stale", None);
        reply.map_err(|e| e.to_string()).and_then(|r| (r.status == 200).then_some(()).ok_or(r.body))
    })
    .expect("redis-1 reaches the survivor");
    let survivor_id = survivor as u64 + 1;
    for (i, peer) in cluster.peers.iter_mut().enumerate() {
        if i != survivor {
            peer.must_stop_with("KILL");
        }
    }

    let url = format!("{}/gui/", cluster.peers[survivor].api_url());
    must_show(&chromium, &url, |page| {
        if !page.contains("data-state=\"ready\"") {
            return Err("the page has no data".into());
        }
        row(page, "<tr data-dataplane=\"default/redis-1\" data-status=\"Offline\"")?;
        if !page.contains("No leader reachable: writes wait") {
            return Err("the page does not say the cluster has no leader".into());
        }
        for id in 1..=3u64 {
            let peer = row(page, &format!("<tr data-peer=\"{id}\""))?;
            let healthy = format!("data-healthy=\"{}\"", id == survivor_id);
            if !peer.contains(&healthy) {
                return Err(format!("peer {id} is not shown {healthy}: {peer}"));
            }
        }
        Ok(())
    });
    must_screenshot(&chromium, &url, "no-majority");
}

#[test]
fn while_its_control_plane_is_down_the_page_says_so_backs_off_and_recovers_by_itself() {
    let chromium = Chromium::must_find();
    let mut cp = KumaCp::must_start();
    let mut page = chromium.must_open(&format!("{}/gui/", cp.api_url()));
    let state = "[document.body.dataset.state, document.getElementById('state').textContent]";
    let wait_for = |page: &mut Page, want: &str, deadline: Duration| {
        try_poll_until(deadline, || match page.evaluate(state) {
            Ok(Value::Array(s)) if s[0] == want => {
                Ok(s[1].as_str().unwrap_or_default().to_string())
            }
            other => Err(format!("{other:?}")),
        })
        .unwrap_or_else(|e| panic!("the page never got to {want}: {e}"))
    };
    wait_for(&mut page, "ready", CONVERGE);

    cp.must_stop_with("KILL");
    // The next refresh fails; the page says so and waits longer before the one after.
    let said = wait_for(&mut page, "error", Duration::from_secs(15));
    assert!(said.contains("retrying in 10s"), "{said}");

    cp.must_restart();
    wait_for(&mut page, "ready", CONVERGE);
}
