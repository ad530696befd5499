//! The chaos tests of the Raft store (DESIGN.md section 6, level 4): a cluster of real `kuma-cp`
//! peers on 127.0.0.1 with a userspace TCP proxy on every peer link, a workload that records
//! every operation, a nemesis (kill -9 of the leader, SIGSTOP/SIGCONT, partitions, restart of
//! every peer), and the checks: per-key linearizability, no acknowledged write lost, replicas
//! converge, a cut-off minority acknowledges no write, and the failover time of each kill.

mod api;
mod checker;
mod cluster;
mod disk;
mod error;
mod history;
mod membership_faults;
mod nemesis;
mod peer;
mod proxy;
mod report;
mod runner;
mod storage_faults;
mod throttle;
mod wipe_two;
mod workload;

pub use api::{ApiClient, MemberView, RaftStatus};
pub use checker::{
    check_linearizability, is_linearizable, lost_writes, minority_acks, sent_to_minority,
    LinearizabilityReport, PartitionWindow,
};
pub(crate) use cluster::{work_dir, write_certs};
pub use cluster::{ChaosCluster, ClusterConfig, SmallDiskConfig};
pub use disk::SmallDisk;
pub use error::ChaosError;
pub use history::{Action, Operation, Outcome, OutcomeCounts, ProcessId};
pub use membership_faults::{TransferRound, WipeRound};
pub use nemesis::{schedule, Fault, Nemesis, NemesisConfig, NemesisReport};
pub use peer::{free_port, pick_ports, ChaosPeer, PeerPorts};
pub use proxy::LinkProxy;
pub use report::ChaosReport;
pub use runner::{kuma_cp_beside_this_program, run_chaos, ChaosConfig};
pub use storage_faults::{DiskFullRound, SlowFsyncRound};
pub use throttle::{SlowDisk, Throttle};
pub use wipe_two::{run_wipe_two, WipeTwoConfig, WipeTwoReport, WipeTwoRun};
pub use workload::{register_name, Workload, WorkloadConfig};
