use std::task::{Context, Poll, Waker};

use super::*;

fn worker(id: &str, caps: &[&str], max: usize) -> (WorkerEntry, SocketTx) {
    let tx = crate::conn::outbox::Outbox::new(1 << 20, 0);
    let rx = tx.clone();
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
        draining: false,
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
    let r = reg.reserve("linux", "any").unwrap();
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
    let r = reg.reserve("linux", "any").unwrap();
    reg.settle(&r.worker_id, Some(("j1", 1)));
    assert!(reg.request_update(None).is_empty());
    assert!(reg.release("w1", "j1", 1).is_some());
    assert_eq!(reg.free_slots("linux"), 0);
    reg.set_updating("w1", false);
    assert_eq!(reg.free_slots("linux"), 1);
}

#[test]
fn drained_workers_keep_their_jobs_and_take_no_new_ones() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux"], 2);
    reg.add_worker(w);
    let r = reg.reserve("linux", "j1").unwrap();
    reg.settle(&r.worker_id, Some(("j1", 1)));
    reg.set_draining(Some("n-w1"), true, None);
    assert_eq!(reg.free_slots("linux"), 0);
    assert!(reg.reserve("linux", "j2").is_none());
    assert_eq!(reg.held_attempt("w1", "j1"), Some(1));
    // Reconciling from the stored list undrains a name that is no longer in it.
    reg.set_draining(None, false, Some(&HashSet::new()));
    assert!(reg.reserve("linux", "j2").is_some());
}

#[test]
fn removing_a_worker_returns_its_jobs() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux"], 3);
    reg.add_worker(w);
    for (j, a) in [("a", 1), ("b", 2)] {
        let r = reg.reserve("linux", "any").unwrap();
        reg.settle(&r.worker_id, Some((j, a)));
    }
    let mut jobs = reg.remove_worker("w1");
    jobs.sort();
    assert_eq!(jobs, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert!(reg.reserve("linux", "any").is_none());
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

const LIMITS: SubscribeLimits = SubscribeLimits {
    per_address: 3,
    per_job: 2,
};

fn event(seq: i64) -> SubEvent {
    SubEvent::Event {
        seq,
        event: std::sync::Arc::new(job::Event::failed_complete("j", 0.0)),
    }
}

fn poll(inbox: &Inbox) -> Poll<SubEvent> {
    inbox.poll_recv(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn full_subscriber_inboxes_drop_their_events_and_resync_from_storage() {
    let reg = Registry::default();
    let sub = reg.subscribe("j", None, LIMITS).unwrap();
    reg.deliver("j", &event(1));
    assert!(matches!(
        poll(&sub.inbox),
        Poll::Ready(SubEvent::Event { seq: 1, .. })
    ));
    assert!(poll(&sub.inbox).is_pending());
    for seq in 2..=(SUBSCRIBER_BUFFER as i64 + 2) {
        reg.deliver("j", &event(seq));
    }
    assert!(sub.inbox.is_lagged());
    // One resync stands for everything dropped; later events queue again.
    assert!(matches!(poll(&sub.inbox), Poll::Ready(SubEvent::Resync)));
    assert!(poll(&sub.inbox).is_pending());
    reg.deliver("j", &event(600));
    assert!(matches!(
        poll(&sub.inbox),
        Poll::Ready(SubEvent::Event { seq: 600, .. })
    ));
}

#[test]
fn subscriptions_are_limited_per_address_and_per_job() {
    let reg = Registry::default();
    let a: std::net::IpAddr = "203.0.113.1".parse().unwrap();
    let b: std::net::IpAddr = "203.0.113.2".parse().unwrap();
    let first = reg.subscribe("j1", Some(a), LIMITS).unwrap();
    reg.subscribe("j1", Some(b), LIMITS).unwrap();
    assert_eq!(
        reg.subscribe("j1", Some(a), LIMITS).unwrap_err(),
        Refused::Job
    );
    reg.subscribe("j2", Some(a), LIMITS).unwrap();
    reg.subscribe("j3", Some(a), LIMITS).unwrap();
    assert_eq!(
        reg.subscribe("j4", Some(a), LIMITS).unwrap_err(),
        Refused::Address
    );
    assert!(
        reg.subscribe("j4", Some(b), LIMITS).is_ok(),
        "another address is not affected"
    );
    // Leaving frees both counts.
    reg.unsubscribe("j1", first.id);
    assert!(reg.subscribe("j1", Some(a), LIMITS).is_ok());
}

#[test]
fn a_connection_holding_an_earlier_attempt_of_a_job_is_not_given_it_again() {
    let reg = Registry::default();
    let (w, _rx) = worker("w1", &["linux"], 2);
    reg.add_worker(w);
    let r = reg.reserve("linux", "j1").unwrap();
    reg.settle(&r.worker_id, Some(("j1", 1)));
    // j1 was requeued (its lease lapsed) while w1 still builds attempt 1.
    assert!(reg.reserve("linux", "j1").is_none());
    assert!(reg.reserve("linux", "j2").is_some(), "other jobs still fit");
}
