//! `kuma-cp`: parse the command line, load the config, run the control plane, map errors to an
//! exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kuma_api_server::ServerInfo;
use kuma_cp::{ControlPlane, KumaCpConfig, StoreType};

// Measured with raft-bench: glibc's allocator cost more CPU per write (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The allocator's own setting for transparent huge pages.
const ALLOCATOR_HUGE_PAGES: &str = "MIMALLOC_ALLOW_THP";

/// mimalloc asks for transparent huge pages for its memory where the kernel allows it: a 2 MiB
/// page is resident as soon as any of it is used, and a fleet's connections leave many pages
/// partly used. Without them kuma-cp holds 58 instead of 73 KiB per connected dataplane (and
/// spends no more CPU: xds-load at N = 3000, BENCHMARKS.md). The allocator reads its settings as
/// the process starts, before `main`: so the first start sets the variable and executes itself
/// again, same process id. An operator's own setting of the variable is left as it is.
fn without_huge_pages() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ALLOCATOR_HUGE_PAGES).is_some() {
        return;
    }
    let Ok(program) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(program);
    if let Some(name) = args.next() {
        again.arg0(name);
    }
    // Returns only when the program could not be executed again: it then runs as it is.
    let _ = again.args(args).env(ALLOCATOR_HUGE_PAGES, "0").exec();
}

#[derive(Parser, Debug)]
#[command(name = "kuma-cp", about = "Universal Control Plane for Envoy-based Service Mesh", version = kuma_build_info::VERSION)]
struct Cli {
    /// Log level: off, error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Launch the Control Plane.
    Run {
        /// Configuration file (YAML); see kuma-cp.defaults.yaml for every key.
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<PathBuf>,
        /// After a majority of the Raft peers is lost for good: make this peer the only member
        /// of its cluster, keeping all of its data, then add fresh peers with kumactl raft
        /// add-peer. For one start only: remove the flag before the next restart.
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// Raft cluster tools.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Schema migrations of the PostgreSQL store.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Print the version.
    Version {
        /// Print build details too.
        #[arg(short = 'a', long)]
        detailed: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateCommand {
    /// Bring the PostgreSQL schema (store.postgres, KUMA_STORE_POSTGRES_*) up to this kuma-cp's
    /// version; safe to run again, and from several instances at once.
    Up {
        /// Configuration file (YAML); see kuma-cp.defaults.yaml for every key.
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<PathBuf>,
    },
}

/// `kuma-cp migrate up`: the line to print.
fn migrate_up(config_file: Option<PathBuf>) -> anyhow::Result<String> {
    let config = KumaCpConfig::load(config_file.as_deref(), &|k| std::env::var(k).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(kuma_cp::postgres::migrate_up(&config.store.postgres))?)
}

#[derive(Subcommand, Debug)]
enum RaftCommand {
    /// Create the cluster CA (or reuse the one in --dir) and a certificate per peer, for the
    /// peers' mutual TLS. Give peer N its ca.crt, peer-N.crt and peer-N.key, and set
    /// KUMA_STORE_RAFT_TLS_CA_FILE, KUMA_STORE_RAFT_TLS_CERT_FILE and KUMA_STORE_RAFT_TLS_KEY_FILE.
    Certs {
        /// Directory for the files; keeps the CA between runs (ca.key stays secret).
        #[arg(long)]
        dir: PathBuf,
        /// Peer ids to issue certificates for, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',', required = true, value_parser = clap::value_parser!(u64).range(1..))]
        ids: Vec<u64>,
    },
    /// Seed a new peer's data from a snapshot file (kumactl raft snapshot save), for a new cluster
    /// holding the saved state. Run it once per peer of the new cluster, with the same file and
    /// the same --peers, each with its own --node-id and an empty --data-dir; then start each peer
    /// with kuma-cp run, that data directory and that peer list.
    Restore {
        /// The snapshot file; a damaged or truncated one is refused.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// This peer's new data directory (KUMA_STORE_RAFT_DATA_DIR): absent or empty.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// This peer's id in the new cluster.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
        node_id: u64,
        /// Every peer of the new cluster (KUMA_STORE_RAFT_PEERS), e.g. 1=10.0.0.1:5683,2=10.0.0.2:5683.
        #[arg(long, value_name = "ID=HOST:PORT,...", value_parser = parse_peers)]
        peers: BTreeMap<u64, String>,
    },
}

fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let peers = kuma_raft::RaftConfig::parse_peers(text).map_err(|e| e.to_string())?;
    if peers.is_empty() {
        return Err("list every peer of the new cluster, e.g. 1=10.0.0.1:5683".to_string());
    }
    Ok(peers)
}

/// `kuma-cp raft restore`: one line saying what was written and how to start the peer.
fn restore(target: kuma_raft::RestoreTarget, from: PathBuf) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let restored = runtime.block_on(kuma_raft::restore(&from, &target))?;
    let peers: Vec<String> = target.peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
    Ok(format!(
        "restored index {} (term {}, {} resources) from {} into {} as peer {} of new cluster {}; \
         start it with kuma-cp run, KUMA_STORE_RAFT_NODE_ID={} KUMA_STORE_RAFT_DATA_DIR={} \
         KUMA_STORE_RAFT_PEERS={}",
        restored.index,
        restored.term,
        restored.resources,
        from.display(),
        target.data_dir.display(),
        target.node_id,
        restored.cluster_id,
        target.node_id,
        target.data_dir.display(),
        peers.join(","),
    ))
}

fn init_logging(level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        format!(
            "--log-level {level:?} is not valid ({e}); use off, error, warn, info, debug or trace"
        )
    })?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now, so a signal that arrives while the control plane is
/// still starting is kept and ends it as soon as it is up, instead of killing it mid-start.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

fn run(config_file: Option<PathBuf>, force_new_cluster: bool) -> anyhow::Result<()> {
    // Before anything records: handles made earlier would record nothing.
    kuma_cp::metrics::install().map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))?;
    let mut config = KumaCpConfig::load(config_file.as_deref(), &|k| std::env::var(k).ok())?;
    if force_new_cluster {
        if config.store.kind != StoreType::Raft {
            anyhow::bail!(
                "--force-new-cluster rewrites the Raft membership, but this control plane does \
                 not use the Raft store: set KUMA_STORE_TYPE=raft, or drop the flag"
            );
        }
        config.store.raft.force_new_cluster = true;
    }
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let info = ServerInfo { version: kuma_build_info::VERSION.to_string(), hostname };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        ControlPlane::new(config, info).run(shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(())
}

fn main() -> ExitCode {
    without_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        Command::Version { detailed } => {
            print!("{}", kuma_build_info::version_text(detailed));
            ExitCode::SUCCESS
        }
        Command::Raft(RaftCommand::Certs { dir, ids }) => {
            match kuma_cp::peer_certs::generate(&dir, &ids) {
                Ok(written) => {
                    for path in written {
                        println!("wrote {}", path.display());
                    }
                    println!(
                        "peer N needs ca.crt, peer-N.crt and peer-N.key: set KUMA_STORE_RAFT_TLS_CA_FILE, \
                         KUMA_STORE_RAFT_TLS_CERT_FILE and KUMA_STORE_RAFT_TLS_KEY_FILE to them"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("Error: {:#}", anyhow::Error::from(e));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Raft(RaftCommand::Restore { from, data_dir, node_id, peers }) => {
            match restore(kuma_raft::RestoreTarget { data_dir, node_id, peers }, from) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate(MigrateCommand::Up { config_file }) => match migrate_up(config_file) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config_file, force_new_cluster } => {
            if let Err(e) = init_logging(&cli.log_level) {
                eprintln!("Error: {e}");
                return ExitCode::from(2);
            }
            match run(config_file, force_new_cluster) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
