//! Exactly once: 520 keyed writes of five operations against the simulator, with a fault
//! injected before about half of them (a reset before the cloud applies, a reset after it
//! applies, an answer delayed past the caller's deadline, a 503, a busy cluster), each retried by
//! its client with its key until it gets a definite answer. The simulator's count of applied
//! writes then says how often each was applied.

use crate::support::*;
use ack_gateway::simulator::{Fault, FaultKind};
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::StatusExt as _;

const WRITES: usize = 520;
const WORKERS: usize = 8;
/// Clusters the writes change, and clusters they delete (one delete each).
const CLUSTERS: usize = 12;
const DOOMED: usize = 30;
/// The client's deadline per attempt; a delayed answer takes longer.
const CALLER_DEADLINE: Duration = Duration::from_millis(400);
const LATE_ANSWER_MS: u64 = 700;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateCluster,
    ModifyCluster,
    CreateClusterNodePool,
    ModifyClusterTags,
    DeleteCluster,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::CreateCluster => "CreateCluster",
            Op::ModifyCluster => "ModifyCluster",
            Op::CreateClusterNodePool => "CreateClusterNodePool",
            Op::ModifyClusterTags => "ModifyClusterTags",
            Op::DeleteCluster => "DeleteCluster",
        }
    }

    /// Whether the gateway can make a lost answer known (a client token or an outcome check).
    fn resolvable(self) -> bool {
        self != Op::ModifyClusterTags
    }
}

/// One planned write: what it is, the marker that finds it among the applied writes, the
/// fault injected before it, and whether it waits out a busy cluster.
#[derive(Debug, Clone)]
struct Write {
    op: Op,
    request: Value,
    marker: String,
    fault: Option<Fault>,
    wait_when_busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Ok,
    OutcomeUnknown,
}

fn fault(op: Op, kind: u32) -> Option<Fault> {
    let base = Fault {
        operation: Some(op.name().into()),
        ..Fault::default()
    };
    Some(match kind {
        0 => Fault {
            kind: FaultKind::ResetUnapplied,
            ..base
        },
        1 => Fault {
            kind: FaultKind::ResetBeforeHeaders,
            ..base
        },
        2 => Fault {
            answer_delay_ms: LATE_ANSWER_MS,
            ..base
        },
        3 => Fault {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: "injected".into(),
            ..base
        },
        4 => Fault {
            status: 400,
            code: "ErrorClusterState".into(),
            message: "cannot operate cluster where state is updating".into(),
            ..base
        },
        _ => return None,
    })
}

fn plan(clusters: &[String], doomed: &[String]) -> Vec<Write> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut doomed = doomed.iter();
    (0..WRITES)
        .map(|i| {
            let marker = format!("eo-{i}");
            let cluster = &clusters[rng.random_range(0..clusters.len())];
            let mut op = match rng.random_range(0..5) {
                0 => Op::CreateCluster,
                1 => Op::ModifyCluster,
                2 => Op::CreateClusterNodePool,
                3 => Op::ModifyClusterTags,
                _ => Op::DeleteCluster,
            };
            let doomed_cluster = if op == Op::DeleteCluster {
                let next = doomed.next();
                if next.is_none() {
                    op = Op::ModifyClusterTags;
                }
                next
            } else {
                None
            };
            let (request, marker) = match op {
                Op::CreateCluster => (json!({"name": marker, "region_id": "cn-hangzhou"}), marker),
                Op::ModifyCluster => (
                    json!({"cluster_id": cluster, "cluster_name": marker}),
                    marker,
                ),
                Op::CreateClusterNodePool => (
                    json!({"cluster_id": cluster, "nodepool_info": {"name": marker}}),
                    marker,
                ),
                Op::ModifyClusterTags => (
                    json!({"cluster_id": cluster, "body": [{"key": "eo", "value": marker}]}),
                    marker,
                ),
                Op::DeleteCluster => {
                    let id = doomed_cluster.expect("a cluster to delete").clone();
                    (json!({"cluster_id": id}), id)
                }
            };
            // About half get a fault, of five kinds.
            let kind = rng.random_range(0..10);
            Write {
                op,
                request,
                marker,
                fault: fault(op, kind),
                wait_when_busy: rng.random_bool(0.5),
            }
        })
        .collect()
}

/// Whether an applied write carries `marker`.
fn carries(op: Op, w: &ack_gateway::simulator::AppliedWrite, marker: &str) -> bool {
    let body = w.body.clone().unwrap_or(Value::Null);
    match op {
        Op::CreateCluster => body["name"] == marker,
        Op::ModifyCluster => body["cluster_name"] == marker,
        Op::CreateClusterNodePool => body["nodepool_info"]["name"] == marker,
        Op::ModifyClusterTags => body
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["value"] == marker)),
        Op::DeleteCluster => w.path_params.get("cluster_id").map(String::as_str) == Some(marker),
    }
}

/// Sends one write with its key until a definite answer: OK, or OUTCOME_UNKNOWN.
async fn until_definite(h: &Harness, i: usize, w: &Write) -> Ending {
    let key = format!("key-{i}");
    let mut metadata = vec![("idempotency-key", key.as_str())];
    if w.wait_when_busy {
        metadata.push(("x-ack-when-busy", "wait"));
    }
    for _ in 0..200 {
        let answer = h
            .call(
                CS_SERVICE,
                w.op.name(),
                w.request.clone(),
                &metadata,
                Some(CALLER_DEADLINE),
            )
            .await;
        match answer {
            Ok(_) => return Ending::Ok,
            Err(s)
                if s.code() == Code::Aborted
                    && s.get_details_error_info()
                        .is_some_and(|e| e.reason == "OUTCOME_UNKNOWN") =>
            {
                return Ending::OutcomeUnknown
            }
            // Worth another try with the same key (`CANCELLED`: the client's own deadline
            // passed before the answer came).
            Err(s)
                if matches!(
                    s.code(),
                    Code::Cancelled
                        | Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::FailedPrecondition
                        | Code::ResourceExhausted
                ) => {}
            Err(s) => panic!("write {i} ({}): {s:?}", w.op.name()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("write {i} ({}) never got a definite answer", w.op.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_writes_through_random_faults_are_applied_exactly_once() {
    let h = Harness::with_config(
        "[simulator]\nmode = \"always\"\ntask_duration = \"30ms\"\n\
         [watch]\ninitial_interval = \"25ms\"\nmax_interval = \"100ms\"\nmax_polls_per_second = 1000.0\n\
         [upstream]\nrequest_timeout = \"5s\"\n\
         [rate_limit]\nupstream = { rate = 100000.0, burst = 100000 }\n",
        std::collections::HashMap::new(),
    )
    .await;
    let started = Instant::now();
    let mut clusters = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..CLUSTERS + DOOMED {
        let (id, task) = create_cluster(&h, &format!("setup-{i}")).await;
        assert_eq!(wait_task(&h, &task).await, "success");
        if i < CLUSTERS {
            clusters.push(id);
        } else {
            doomed.push(id);
        }
    }
    h.sim().clear_requests();
    let writes = Arc::new(plan(&clusters, &doomed));
    let next = Arc::new(AtomicUsize::new(0));
    let endings = Arc::new(Mutex::new(vec![None; writes.len()]));
    let h = Arc::new(h);
    let workers = (0..WORKERS).map(|_| {
        let (h, writes, next, endings) = (h.clone(), writes.clone(), next.clone(), endings.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(w) = writes.get(i) else { return };
                if let Some(f) = &w.fault {
                    h.sim().inject(f.clone());
                }
                let ending = until_definite(&h, i, w).await;
                endings.lock().expect("endings")[i] = Some(ending);
            }
        }
    });
    tokio::time::timeout(
        Duration::from_secs(90),
        futures_util::future::join_all(workers),
    )
    .await
    .expect("every write ends in time");
    // Writes whose callers left before their answer finish on their own: give them the
    // longest delay once more.
    tokio::time::sleep(Duration::from_millis(LATE_ANSWER_MS + 200)).await;

    let applied = h.sim().applied();
    assert!(
        applied.count as usize == applied.writes.len(),
        "the log kept them all"
    );
    let endings = endings.lock().expect("endings").clone();
    let (mut once, mut twice, mut lost, mut unknown, mut missing) = (0, 0, 0, 0, Vec::new());
    for (i, w) in writes.iter().enumerate() {
        let n = applied
            .writes
            .iter()
            .filter(|a| a.operation == w.op.name() && carries(w.op, a, &w.marker))
            .count();
        let ending = endings[i].expect("every write ended");
        match n {
            1 => once += 1,
            0 => {}
            _ => twice += 1,
        }
        if ending == Ending::Ok && n == 0 {
            lost += 1;
        }
        if ending == Ending::OutcomeUnknown {
            unknown += 1;
            assert!(
                !w.op.resolvable(),
                "write {i} ({}) was resolvable",
                w.op.name()
            );
        }
        if w.op.resolvable() && n != 1 {
            missing.push((i, w.op.name(), n));
        }
    }
    let faults = writes.iter().filter(|w| w.fault.is_some()).count();
    // What can end unknown: resets of a write nothing can check (each fault hits the next
    // request of its operation, whichever write it belongs to).
    let unresolvable_resets = writes
        .iter()
        .filter(|w| !w.op.resolvable())
        .filter(|w| {
            w.fault.as_ref().is_some_and(|f| {
                matches!(
                    f.kind,
                    FaultKind::ResetUnapplied | FaultKind::ResetBeforeHeaders
                )
            })
        })
        .count();
    println!(
        "{unresolvable_resets} resets injected into ModifyClusterTags, which nothing can check"
    );
    println!(
        "{} writes, {once} applied once, {twice} applied twice, {lost} lost, {unknown} outcome unknown \
         ({faults} with a fault injected; {} s)",
        writes.len(),
        started.elapsed().as_secs()
    );
    assert_eq!(twice, 0, "no write is applied twice");
    assert_eq!(lost, 0, "no write answered OK is missing");
    assert!(
        missing.is_empty(),
        "writes with a client token or an outcome check are applied exactly once: {missing:?}"
    );
}
