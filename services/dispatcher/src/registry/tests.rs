use std::sync::atomic::Ordering;

use super::*;

fn worker(
    id: &str,
    caps: &[&str],
    max: usize,
) -> (WorkerEntry, mpsc::UnboundedReceiver<WsMessage>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let entry = WorkerEntry {
        id: id.into(),
        name: format!("n-{id}"),
        capabilities: caps.iter().map(|s| (*s).to_owned()).collect(),
        max_concurrent: max,
        jobs: HashMap::new(),
        reserved: 0,
        updating: false,
        update_pending: false,
        updating_since: None,
        tx,
        notices: mpsc::unbounded_channel().0,
    };
    (entry, rx)
}

#[test]
fn slots_are_reserved_held_and_freed_once() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux", "android"], 2);
    reg.add_worker(w);
    assert_eq!(reg.free_slots("linux"), 2);
    assert_eq!(reg.free_slots("macos"), 0);
    let r = reg.reserve("linux").unwrap();
    assert_eq!(reg.free_slots("android"), 1);
    reg.settle(&r.worker_id, Some(("j1", 1)));
    assert_eq!(reg.held_attempt("w1", "j1"), Some(1));
    assert_eq!(reg.free_slots("linux"), 1);
    // Wrong attempt does not free; the right one frees exactly once.
    reg.release("w1", "j1", 2);
    assert_eq!(reg.free_slots("linux"), 1);
    reg.release("w1", "j1", 1);
    reg.release("w1", "j1", 1);
    assert_eq!(reg.free_slots("linux"), 2);
}

#[test]
fn updating_workers_take_no_jobs_and_busy_ones_update_when_idle() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux"], 1);
    reg.add_worker(w);
    let r = reg.reserve("linux").unwrap();
    reg.settle(&r.worker_id, Some(("j1", 1)));
    assert!(reg.request_update(None).is_empty());
    assert!(reg.release("w1", "j1", 1).is_some());
    assert_eq!(reg.free_slots("linux"), 0);
    reg.set_updating("w1", false);
    assert_eq!(reg.free_slots("linux"), 1);
}

#[test]
fn removing_a_worker_returns_its_jobs() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux"], 3);
    reg.add_worker(w);
    for (j, a) in [("a", 1), ("b", 2)] {
        let r = reg.reserve("linux").unwrap();
        reg.settle(&r.worker_id, Some((j, a)));
    }
    let mut jobs = reg.remove_worker("w1");
    jobs.sort();
    assert_eq!(jobs, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert!(reg.reserve("linux").is_none());
}

#[test]
fn unknown_job_subscriptions_are_throttled_per_address() {
    let reg = Registry::default();
    let a: std::net::IpAddr = "203.0.113.1".parse().unwrap();
    let b: std::net::IpAddr = "203.0.113.2".parse().unwrap();
    for _ in 0..FAILED_SUBSCRIBE_LIMIT {
        assert!(reg.note_failed_subscribe(a));
    }
    assert!(!reg.note_failed_subscribe(a));
    assert!(reg.note_failed_subscribe(b));
}

#[test]
fn full_subscriber_queues_are_marked_lagged() {
    let reg = Registry::default();
    let (_id, _rx, lagged) = reg.subscribe("j");
    for seq in 0..=(SUBSCRIBER_BUFFER as i64) {
        reg.deliver(
            "j",
            &SubEvent::Event {
                seq,
                event: std::sync::Arc::new(job::Event::failed_complete("j", 0.0)),
            },
        );
    }
    assert!(lagged.load(Ordering::Relaxed));
}
