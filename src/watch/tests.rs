use super::backoff::{jittered, retry, Interval};
use super::target::{phase_of, End, History, Reading, Target};
use crate::config::traffic::Rate;
use crate::config::WatchConfig;
use crate::proto::gateway::Phase;
use crate::ratelimit::TokenBucket;
use serde_json::json;
use std::time::{Duration, Instant};
use tonic::Code;

fn config() -> WatchConfig {
    WatchConfig {
        initial_interval: Duration::from_secs(2),
        max_interval: Duration::from_secs(30),
        backoff_factor: 2.0,
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
        ..WatchConfig::default()
    }
}

#[test]
fn the_interval_backs_off_while_nothing_changes_and_snaps_back_on_a_change() {
    let mut i = Interval::new(&config());
    let seen: Vec<u64> = (0..6)
        .map(|_| {
            let now = i.current().as_secs();
            i.unchanged();
            now
        })
        .collect();
    assert_eq!(seen, [2, 4, 8, 16, 30, 30]);
    i.changed();
    assert_eq!(i.current(), Duration::from_secs(2));
}

#[test]
fn retries_double_up_to_the_maximum_and_honour_the_upstreams_hint() {
    let mut r = retry(&config());
    let waits: Vec<(u64, u32)> = (0..5)
        .map(|_| {
            let (w, n) = r.failed(None);
            (w.as_secs(), n)
        })
        .collect();
    assert_eq!(waits, [(1, 1), (2, 2), (4, 3), (8, 4), (8, 5)]);
    r.succeeded();
    assert_eq!(
        r.failed(Some(Duration::from_secs(5))),
        (Duration::from_secs(5), 1)
    );
}

#[test]
fn jitter_only_lengthens_a_wait() {
    let w = Duration::from_secs(10);
    assert_eq!(jittered(w, 0.2, 0.0), w);
    assert_eq!(jittered(w, 0.2, 0.5), Duration::from_secs(11));
    assert!(jittered(w, 0.2, 0.999_999) < Duration::from_secs(12));
    assert_eq!(jittered(w, 0.0, 0.7), w);
}

#[test]
fn the_rate_budget_allows_a_burst_then_spaces_polls_out() {
    let t0 = Instant::now();
    let b = TokenBucket::full_at(
        Rate {
            per_second: 4.0,
            burst: 4.0,
        },
        t0,
    );
    for _ in 0..4 {
        assert_eq!(b.try_take_at(t0), Ok(()));
    }
    let wait = b.try_take_at(t0).expect_err("the burst is spent");
    assert_eq!(wait, Duration::from_millis(250));
    assert_eq!(b.try_take_at(t0 + Duration::from_millis(250)), Ok(()));
    assert!(b.try_take_at(t0 + Duration::from_millis(300)).is_err());
    // A long quiet spell refills only up to the burst.
    let later = t0 + Duration::from_secs(60);
    for _ in 0..4 {
        assert_eq!(b.try_take_at(later), Ok(()));
    }
    assert!(b.try_take_at(later).is_err());
}

#[test]
fn state_words_map_to_phases_and_unknown_ones_keep_the_watch_going() {
    for (word, phase) in [
        ("running", Phase::Running),
        ("Success", Phase::Succeeded),
        ("failed", Phase::Failed),
        ("Fail", Phase::Failed),
        ("canceled", Phase::Canceled),
        ("pause", Phase::Paused),
        ("paused", Phase::Paused),
        ("waiting_for_approval", Phase::Running),
        ("", Phase::Running),
    ] {
        assert_eq!(phase_of(word), phase, "{word}");
    }
}

#[test]
fn targets_normalise_their_arguments_so_equal_watches_share_a_key() {
    let a = Target::addon_upgrade("c1", &["b".into(), " a ".into(), "b".into()]).expect("ok");
    let b = Target::addon_upgrade("c1", &["a".into(), "b".into()]).expect("ok");
    assert_eq!(a, b);
    assert_eq!(
        Target::cluster("c1", &[]).expect("ok"),
        Target::cluster("c1", &["Running".into()]).expect("ok")
    );
    assert_eq!(
        Target::addon_upgrade("c1", &[])
            .expect_err("no add-on")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        Target::task("").expect_err("no id").code(),
        Code::InvalidArgument
    );
}

/// Reads an answer given as JSON (proto names, what the cloud sends) through the operation's
/// response message, as a poll does.
trait ReadJson {
    fn read_json(&self, answer: &serde_json::Value, history: &mut History) -> Reading;
}

impl ReadJson for Target {
    fn read_json(&self, answer: &serde_json::Value, history: &mut History) -> Reading {
        self.read(&super::answer::fixture(self.operation(), answer), history)
    }
}

fn task_answer(state: &str, stage: &str, events: &[&str]) -> serde_json::Value {
    json!({
        "state": state, "current_stage": stage, "task_type": "cluster_create", "cluster_id": "c1",
        "stages": [{"message": stage, "state": state}],
        "events": events.iter().map(|m| json!({"message": m, "timestamp": m})).collect::<Vec<_>>(),
    })
}

#[test]
fn a_task_reading_accumulates_events_once_and_ends_on_success() {
    let t = Target::task("T-1").expect("ok");
    let mut h = History::default();
    let r = t.read_json(&task_answer("running", "A", &["e1"]), &mut h);
    assert_eq!(r.status.phase, Phase::Running as i32);
    assert!(r.end.is_none());
    let r = t.read_json(&task_answer("running", "B", &["e1", "e2"]), &mut h);
    assert_eq!(r.status.stage, "B");
    let messages: Vec<&str> = h.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["e1", "e2"]);
    let r = t.read_json(&task_answer("success", "B", &["e1", "e2"]), &mut h);
    assert_eq!(r.status.progress_percent, Some(100));
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    assert_eq!(h.events.len(), 2);
}

#[test]
fn a_failed_task_ends_aborted_with_its_error_code() {
    let t = Target::task("T-1").expect("ok");
    let mut answer = task_answer("failed", "A", &[]);
    answer["error"] = json!({"code": "QuotaExceeded", "message": "none left"});
    let r = t.read_json(&answer, &mut History::default());
    let Some(End::Work(Err(status))) = r.end else {
        panic!("a failure ends the work: {:?}", r.end)
    };
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("QuotaExceeded: none left"),
        "{status:?}"
    );
    assert_eq!(r.status.message, "none left");
}

#[test]
fn a_paused_upgrade_is_not_finished_and_its_steps_become_stages() {
    let t = Target::cluster_upgrade("c1").expect("ok");
    let mut h = History::default();
    let answer = |status: &str, step: &str| json!({"status": status, "upgrade_step": step, "upgrade_task": {"status": status, "message": "m"}});
    assert!(t
        .read_json(&answer("running", "prechecking"), &mut h)
        .end
        .is_none());
    let r = t.read_json(&answer("pause", "pause"), &mut h);
    assert_eq!(r.status.phase, Phase::Paused as i32);
    assert!(r.end.is_none());
    let r = t.read_json(&answer("success", "success"), &mut h);
    let names: Vec<(&str, &str)> = r
        .status
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("prechecking", "success"),
            ("pause", "success"),
            ("success", "success")
        ],
        "once the upgrade has ended, its last stage has too"
    );
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    let mut h = History::default();
    t.read_json(&answer("running", "upgrading"), &mut h);
    let r = t.read_json(&answer("failed", "upgrading"), &mut h);
    let last = r.status.stages.last().expect("a stage");
    assert_eq!(
        (last.name.as_str(), last.state.as_str()),
        ("upgrading", "failed")
    );
}

#[test]
fn an_upgrade_that_never_started_cannot_be_watched() {
    let t = Target::cluster_upgrade("c1").expect("ok");
    let r = t.read_json(
        &json!({"status": "", "upgrade_step": "not_start"}),
        &mut History::default(),
    );
    let Some(End::Poll(status)) = r.end else {
        panic!("refused: {:?}", r.end)
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[test]
fn add_on_upgrades_finish_when_every_one_has() {
    let t = Target::addon_upgrade("c1", &["a".into(), "b".into()]).expect("ok");
    let entry =
        |status: &str| json!({"addon_info": {"version": "v1"}, "tasks": {"status": status}});
    let mut h = History::default();
    let r = t.read_json(
        &json!({"entries": {"a": entry("Success"), "b": entry("Running")}}),
        &mut h,
    );
    assert_eq!(r.status.phase, Phase::Running as i32);
    assert_eq!(r.status.progress_percent, Some(50));
    assert!(r.end.is_none());
    let r = t.read_json(
        &json!({"entries": {"a": entry("Success"), "b": entry("Failed")}}),
        &mut h,
    );
    assert_eq!(r.status.phase, Phase::Failed as i32);
    assert!(matches!(r.end, Some(End::Work(Err(_)))));
    let missing = t.read_json(&json!({"entries": {"a": entry("Running")}}), &mut h);
    assert!(matches!(missing.end, Some(End::Poll(ref s)) if s.code() == Code::NotFound));
}

#[test]
fn a_cluster_reaches_its_target_fails_or_is_deleted() {
    let running = Target::cluster("c1", &[]).expect("ok");
    let mut h = History::default();
    let r = running.read_json(&json!({"state": "initial"}), &mut h);
    assert!(r.end.is_none());
    let r = running.read_json(
        &json!({"state": "running", "current_version": "1.31"}),
        &mut h,
    );
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    assert_eq!(
        r.status
            .attributes
            .get("current_version")
            .map(String::as_str),
        Some("1.31")
    );
    let r = running.read_json(
        &json!({"state": "updating_failed"}),
        &mut History::default(),
    );
    assert!(matches!(r.end, Some(End::Work(Err(_)))));

    // Gone before it was ever seen: unknown. Gone after: deleted.
    let deleted = Target::cluster("c1", &["deleted".into()]).expect("ok");
    let mut h = History::default();
    let r = deleted.gone(tonic::Status::not_found("no"), &mut h);
    assert!(matches!(r.end, Some(End::Poll(_))));
    deleted.read_json(&json!({"state": "deleting"}), &mut h);
    let r = deleted.gone(tonic::Status::not_found("no"), &mut h);
    assert_eq!(r.status.state, "deleted");
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    let r = running.gone(tonic::Status::not_found("no"), &mut h);
    assert!(
        matches!(r.end, Some(End::Work(Err(_)))),
        "deleted is not running"
    );
}

fn pool_answer(
    state: &str,
    desired: i64,
    serving: i64,
    total: i64,
    failed: i64,
) -> serde_json::Value {
    json!({
        "nodepool_info": {"name": "workers"},
        "scaling_group": {"desired_size": desired},
        "status": {"state": state, "serving_nodes": serving, "healthy_nodes": serving,
                   "total_nodes": total, "failed_nodes": failed, "initial_nodes": total - serving - failed,
                   "conditions": [{"type": "Ready", "status": if failed > 0 { "False" } else { "True" },
                                   "reason": if failed > 0 { "InstanceStockOut" } else { "NodePoolReady" },
                                   "message": "why"}]},
    })
}

#[test]
fn a_node_pool_reaches_active_once_its_nodes_serve_and_fails_on_failed_nodes() {
    let pool = Target::nodepool("c1", "np1", &[]).expect("ok");
    let mut h = History::default();
    let r = pool.read_json(&pool_answer("scaling", 4, 1, 3, 0), &mut h);
    assert!(r.end.is_none());
    assert_eq!(r.status.progress_percent, Some(25));
    assert_eq!(
        r.status.node_counts.map(|n| (n.serving, n.desired)),
        Some((1, 4))
    );
    // `active` with fewer nodes serving than desired is not there yet.
    let r = pool.read_json(&pool_answer("active", 4, 3, 4, 0), &mut h);
    assert!(r.end.is_none(), "{:?}", r.status);
    let r = pool.read_json(&pool_answer("active", 4, 4, 4, 0), &mut h);
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    assert_eq!(r.status.progress_percent, Some(100));
    let stages: Vec<&str> = r.status.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["scaling", "active"]);

    let r = pool.read_json(&pool_answer("active", 4, 2, 4, 2), &mut History::default());
    let Some(End::Work(Err(status))) = r.end else {
        panic!("failed nodes fail the watch: {:?}", r.end)
    };
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        r.status.error.map(|e| e.code).as_deref(),
        Some("InstanceStockOut")
    );

    // A shrink's progress counts nodes released; deletion is the aim for `deleted`.
    let deleted = Target::nodepool("c1", "np1", &["DELETED".into()]).expect("ok");
    let mut h = History::default();
    let r = deleted.read_json(&pool_answer("deleting", 0, 0, 4, 0), &mut h);
    assert_eq!(r.status.progress_percent, Some(0));
    let r = deleted.read_json(&pool_answer("deleting", 0, 0, 1, 0), &mut h);
    assert_eq!(r.status.progress_percent, Some(75));
    let r = deleted.gone(tonic::Status::not_found("gone"), &mut h);
    assert!(matches!(r.end, Some(End::Work(Ok(())))));
    let r = pool.gone(tonic::Status::not_found("gone"), &mut h);
    assert!(matches!(r.end, Some(End::Work(Err(ref s))) if s.code() == Code::NotFound));
}

fn event(n: usize, level: &str) -> serde_json::Value {
    json!({"event_id": format!("e{n}"), "time": format!("2026-01-01T00:{:02}:{:02}Z", n / 60 % 60, n % 60),
           "type": "cluster_scaleout", "subject": "c1",
           "data": {"level": level, "reason": format!("R{n}"), "message": "m"}})
}

#[test]
fn a_clusters_events_keep_the_newest_in_a_window_each_once() {
    let target = Target::cluster_events("c1").expect("ok");
    let mut h = History::default();
    let first: Vec<_> = (0..1050).map(|n| event(n, "info")).collect();
    let r = target.read_json(&json!({ "events": first }), &mut h);
    assert!(r.end.is_none());
    assert_eq!((h.events.len(), h.dropped), (1000, 50));
    assert_eq!(h.events[0].event_id, "e50", "the oldest were dropped");
    let again: Vec<_> = (1040..1060).map(|n| event(n, "error")).collect();
    let r2 = target.read_json(&json!({ "events": again }), &mut h);
    assert_eq!(
        (h.events.len(), h.dropped),
        (1000, 60),
        "ten new, ten known"
    );
    assert_eq!(h.events.last().map(|e| e.level.as_str()), Some("error"));
    assert_eq!(
        r.status, r2.status,
        "the status does not change with the events"
    );
}

#[tokio::test]
async fn a_filtering_subscriber_follows_a_sliding_window_and_skips_what_it_filters_out() {
    use super::subscriber::{EventFilter, Subscriber};
    use super::Observed;
    use crate::proto::gateway::{TaskEvent, WatchEventKind as Kind, WatchStatus};
    use futures_util::StreamExt as _;
    use std::sync::Arc;
    let e = |n: u64, level: &str| TaskEvent {
        event_id: format!("e{n}"),
        level: level.into(),
        ..Default::default()
    };
    let snapshot = |sequence: u64, dropped: u64, events: Vec<TaskEvent>| {
        Arc::new(Observed {
            sequence,
            polled: true,
            status: WatchStatus::default(),
            events: Arc::new(events),
            events_dropped: dropped,
            poll_error: None,
            observed_at: None,
            end: None,
        })
    };
    let (tx, rx) = tokio::sync::watch::channel(snapshot(1, 0, vec![e(0, "info"), e(1, "error")]));
    let config = WatchConfig {
        heartbeat_interval: Duration::from_secs(1),
        ..config()
    };
    let filter = EventFilter {
        levels: vec!["error".into()],
        since: None,
    };
    let mut stream = Box::pin(
        Subscriber::new(rx, &config, None, Box::new(|| Ok(())))
            .with_filter(filter)
            .into_stream(),
    );
    let initial = stream.next().await.expect("a message").expect("ok");
    assert_eq!(initial.kind, Kind::Initial as i32);
    assert!(
        initial.new_events.is_empty(),
        "from now: nothing known is sent"
    );
    // The window slid by one: the subscriber gets the new error only.
    tx.send_replace(snapshot(
        2,
        1,
        vec![e(1, "error"), e(2, "info"), e(3, "error")],
    ));
    let change = stream.next().await.expect("a message").expect("ok");
    assert_eq!(change.kind, Kind::Change as i32);
    let ids: Vec<&str> = change
        .new_events
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(ids, ["e3"]);
    // Only info events, some time after: nothing is sent until the heartbeat, which is due a
    // heartbeat interval after the last message sent (the skipped change does not push it back).
    let changed = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    tx.send_replace(snapshot(
        3,
        2,
        vec![e(2, "info"), e(3, "error"), e(4, "info")],
    ));
    let next = stream.next().await.expect("a message").expect("ok");
    assert_eq!(next.kind, Kind::Heartbeat as i32, "{next:?}");
    assert!(next.new_events.is_empty());
    assert!(
        changed.elapsed() < Duration::from_millis(1500),
        "due at 1 s, not 1.6 s: {:?}",
        changed.elapsed()
    );
}
