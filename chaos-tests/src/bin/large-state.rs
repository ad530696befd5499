//! `large-state`: loads a 3-peer Raft cluster of kuma-cp with R resources (Dataplanes and
//! policies across 100 meshes) for each R of `--resources`, measures memory per resource, list
//! latency with paging, snapshot build, a follower's restart and a new peer's snapshot install,
//! then prints each run and a table saying how every figure grew with R.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kuma_chaos_tests::{growth_verdict, Figure, LargeState, LargeStateConfig, LargeStateReport};

#[derive(Parser, Debug)]
#[command(
    name = "large-state",
    about = "A 3-peer Raft cluster with many resources: restart, snapshot, memory, list paging"
)]
struct Args {
    /// Resources to load, one fresh cluster per value (comma-separated), e.g.
    /// 10000,30000,100000.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    resources: Vec<usize>,
    /// Concurrent writers while loading (spread over the three peers).
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// The kuma-cp binary; by default the one next to this program.
    #[arg(long)]
    kuma_cp: Option<PathBuf>,
    /// kumactl, to time `kumactl raft snapshot save`; by default the one next to this program
    /// when it is there.
    #[arg(long)]
    kumactl: Option<PathBuf>,
    /// Log level of kuma-cp.
    #[arg(long, default_value = "info")]
    cp_log_level: String,
    /// An environment variable for every peer, e.g. `KUMA_STORE_RAFT_SNAPSHOT_ENTRIES=2000`
    /// (repeatable).
    #[arg(long = "cp-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    cp_env: Vec<(String, String)>,
    /// Keep each cluster's certificates, data and logs under this directory (`r<R>/`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn beside_this_program(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_default();
    dir.join(name)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let kumactl = args.kumactl.clone().or_else(|| {
        let beside = beside_this_program("kumactl");
        beside.exists().then_some(beside)
    });
    let configs: Vec<LargeStateConfig> = args
        .resources
        .iter()
        .map(|r| LargeStateConfig {
            kuma_cp: args.kuma_cp.clone().unwrap_or_else(|| beside_this_program("kuma-cp")),
            kumactl: kumactl.clone(),
            resources: *r,
            writers: args.writers,
            log_level: args.cp_log_level.clone(),
            env: args.cp_env.clone(),
            dir: args.dir.as_ref().map(|d| d.join(format!("r{r}"))),
        })
        .collect();
    for config in &configs {
        if let Err(e) = config.validate() {
            eprintln!("large-state: {e:#}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("large-state: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut reports: Vec<LargeStateReport> = Vec::new();
    for config in configs {
        println!(
            "large-state: {} resources, 3 Raft peers, {} writers, {}",
            config.resources,
            config.writers,
            config.kuma_cp.display()
        );
        match runtime.block_on(LargeState::new(config).run()) {
            Ok(report) => {
                for line in report.human_lines() {
                    println!("  {line}");
                }
                println!("{}", report.machine_line());
                reports.push(report);
            }
            Err(e) => {
                eprintln!("large-state: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    if reports.len() > 1 {
        print_table(&reports);
    }
    ExitCode::SUCCESS
}

/// Every figure at every size (by name: a figure may be missing at a small size), and how it
/// grew from the smallest run that has it to the largest.
fn print_table(reports: &[LargeStateReport]) {
    let figures: Vec<Vec<Figure>> = reports.iter().map(LargeStateReport::figures).collect();
    let sizes: Vec<String> = reports.iter().map(|r| format!("R={}", r.resources)).collect();
    println!("\n{:<34} {:>4} {} growth", "figure", "unit", cells(&sizes));
    let mut worse = Vec::new();
    let largest = &figures[figures.len() - 1];
    for figure in largest {
        let at: Vec<Option<&Figure>> =
            figures.iter().map(|fs| fs.iter().find(|f| f.name == figure.name)).collect();
        let values: Vec<String> =
            at.iter().map(|f| f.map_or("-".to_string(), |f| format!("{:.1}", f.value))).collect();
        let Some((first, small)) = at.iter().enumerate().find_map(|(i, f)| f.map(|f| (i, f)))
        else {
            continue;
        };
        let verdict = if first == reports.len() - 1 {
            "-".to_string()
        } else {
            let (from, to) = (reports[first].resources, reports[reports.len() - 1].resources);
            growth_verdict(figure, from, to, small.value, figure.value)
        };
        if verdict.starts_with("WORSE") {
            worse.push(figure.name.replace(' ', "_"));
        }
        println!("{:<34} {:>4} {} {verdict}", figure.name, figure.unit, cells(&values));
    }
    println!(
        "large-state-growth from={} to={} worse_than_expected={}",
        reports[0].resources,
        reports[reports.len() - 1].resources,
        if worse.is_empty() { "none".to_string() } else { worse.join(",") }
    );
}

fn cells(values: &[String]) -> String {
    values.iter().map(|v| format!("{v:>12}")).collect::<Vec<_>>().join(" ")
}
