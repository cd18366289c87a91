//! The in-process queue's semantics, as the hub relies on them from RabbitMQ.

use std::time::Duration;

use futures_util::FutureExt as _;

use super::*;

fn job(id: i64, target: &'static str, priority: u8) -> Publish<'static> {
    Publish {
        id,
        exchange: Exchange::Jobs,
        routing_key: target,
        payload: b"{}",
        priority,
    }
}

fn event(id: i64, key: &'static str) -> Publish<'static> {
    Publish {
        id,
        exchange: Exchange::Events,
        routing_key: key,
        payload: b"{}",
        priority: 0,
    }
}

fn linux() -> Source {
    Source::Target("linux".into())
}

/// The next delivery, failing the test if none comes within a second.
async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(1), sub.next())
        .await
        .expect("a delivery within 1 s")
        .expect("subscription alive")
}

/// No delivery within 100 ms.
async fn nothing(sub: &mut Subscription) {
    let got = tokio::time::timeout(Duration::from_millis(100), sub.next()).await;
    assert!(got.is_err(), "expected no delivery, got {got:?}");
}

#[tokio::test]
async fn higher_priority_first_and_fifo_within_a_priority() {
    let q = Memory::new();
    let published = [
        job(1, "linux", 1),
        job(2, "linux", 1),
        job(3, "linux", 10),
        job(4, "linux", 11),
        job(5, "linux", 10),
        job(6, "linux", 1),
    ];
    assert!(q.publish(&published).is_empty());
    assert_eq!(q.ready(&linux()), 6);
    let mut sub = q.subscribe(&linux(), 10);
    let mut order = Vec::new();
    for _ in 0..6 {
        let d = next(&mut sub).await;
        order.push(d.id.unwrap());
        d.settle(Disposition::Ack).await.unwrap();
    }
    assert_eq!(order, [4, 3, 5, 1, 2, 6]);
    assert_eq!(q.ready(&linux()), 0);
}

#[tokio::test]
async fn a_target_without_consumers_does_not_hold_up_another() {
    let q = Memory::new();
    q.publish(&[job(1, "macos", 11), job(2, "linux", 1)]);
    let mut sub = q.subscribe(&linux(), 1);
    assert_eq!(next(&mut sub).await.id, Some(2));
    assert_eq!(q.ready(&Source::Target("macos".into())), 1);
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_by_a_publish() {
    let q = Memory::new();
    let mut sub = q.subscribe(&linux(), 1);
    let mut waiting = Box::pin(sub.next());
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "nothing to deliver yet: the consumer waits"
    );
    q.publish(&[job(7, "linux", 1)]);
    let delivered = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("woken by the publish")
        .expect("subscription alive");
    assert_eq!(delivered.id, Some(7));
}

#[tokio::test]
async fn a_consumer_at_its_prefetch_is_woken_by_an_ack() {
    let q = Memory::new();
    q.publish(&[job(1, "linux", 1), job(2, "linux", 1)]);
    let mut sub = q.subscribe(&linux(), 1);
    let first = next(&mut sub).await;
    let mut waiting = Box::pin(sub.next());
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "at its prefetch: the consumer waits"
    );
    first.settle(Disposition::Ack).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("woken by the ack")
        .expect("subscription alive");
    assert_eq!(delivered.id, Some(2));
}

#[tokio::test]
async fn prefetch_bounds_the_unacknowledged_deliveries() {
    let q = Memory::new();
    q.publish(&[job(1, "linux", 1), job(2, "linux", 1), job(3, "linux", 1)]);
    let mut sub = q.subscribe(&linux(), 2);
    let first = next(&mut sub).await;
    let _second = next(&mut sub).await;
    nothing(&mut sub).await;
    first.settle(Disposition::Ack).await.unwrap();
    assert_eq!(next(&mut sub).await.id, Some(3));
}

#[tokio::test]
async fn a_nacked_delivery_is_requeued_at_its_place_and_marked_redelivered() {
    let q = Memory::new();
    q.publish(&[job(1, "linux", 1), job(2, "linux", 1)]);
    let mut sub = q.subscribe(&linux(), 1);
    let first = next(&mut sub).await;
    assert!(!first.redelivered);
    first.settle(Disposition::Requeue).await.unwrap();
    let again = next(&mut sub).await;
    assert_eq!(again.id, Some(1), "back at its place, ahead of 2");
    assert!(again.redelivered);
    again.settle(Disposition::Ack).await.unwrap();
    assert_eq!(next(&mut sub).await.id, Some(2));
}

#[tokio::test]
async fn deliveries_of_a_dropped_subscription_go_to_the_next_consumer() {
    let q = Memory::new();
    q.publish(&[job(1, "linux", 1), job(2, "linux", 10)]);
    let mut gone = q.subscribe(&linux(), 2);
    let a = next(&mut gone).await;
    let b = next(&mut gone).await;
    assert_eq!((a.id, b.id), (Some(2), Some(1)));
    assert_eq!(q.ready(&linux()), 0);
    drop(gone);
    assert_eq!(q.ready(&linux()), 2);
    // Settling after the subscription ended is refused (the message is back in the queue).
    assert!(a.settle(Disposition::Ack).await.is_err());
    let mut sub = q.subscribe(&linux(), 2);
    let again = next(&mut sub).await;
    assert_eq!(again.id, Some(2), "priority order kept");
    assert!(again.redelivered);
    let second = next(&mut sub).await;
    assert_eq!(second.id, Some(1));
    // `b` delivered message 1 to the ended subscription. Settled now that `sub` holds it, it
    // must neither requeue it (a second copy) nor ack it from under `sub`.
    assert!(b.settle(Disposition::Requeue).await.is_err());
    assert_eq!(q.ready(&linux()), 0, "no second copy of message 1");
    again.settle(Disposition::Ack).await.unwrap();
    second.settle(Disposition::Ack).await.unwrap();
    assert_eq!(q.ready(&linux()), 0);
}

#[tokio::test]
async fn a_rejected_delivery_becomes_a_dead_letter() {
    let q = Memory::new();
    q.publish(&[job(1, "linux", 1)]);
    let mut sub = q.subscribe(&linux(), 1);
    next(&mut sub)
        .await
        .settle(Disposition::Reject)
        .await
        .unwrap();
    assert_eq!(q.dead_count(), 1);
    assert_eq!(q.ready(&linux()), 0);
    assert_eq!(q.take_dead(10).len(), 1);
    assert_eq!(q.dead_count(), 0);
}

#[tokio::test]
async fn job_messages_for_an_unknown_queue_are_returned_and_events_never_are() {
    let q = Memory::new();
    let returned = q.publish(&[
        job(1, "linux", 1),
        job(2, "amiga", 1),
        event(3, "job.x"),
        job(4, "finisher", 0),
    ]);
    assert_eq!(returned, [1]);
    assert_eq!(q.ready(&Source::Finisher), 1);
}

#[tokio::test]
async fn events_reach_every_dispatcher_subscription_and_nobody_without_one() {
    let q = Memory::new();
    // No subscription yet: dropped, as on a topic exchange without bound queues.
    q.publish(&[event(1, "job.a")]);
    let mut one = q.subscribe(&Source::Instance("d1".into()), 16);
    let mut two = q.subscribe(&Source::Instance("d2".into()), 16);
    q.publish(&[
        event(2, "job.a"),
        event(3, "control.cancel"),
        event(4, "other.x"),
    ]);
    for sub in [&mut one, &mut two] {
        let a = next(sub).await;
        let b = next(sub).await;
        assert_eq!((a.id, b.id), (Some(2), Some(3)));
        a.settle(Disposition::Ack).await.unwrap();
        b.settle(Disposition::Ack).await.unwrap();
        nothing(sub).await;
    }
    // A private queue dies with its subscription.
    drop(one);
    q.publish(&[event(5, "job.a")]);
    assert_eq!(next(&mut two).await.id, Some(5));
    assert_eq!(q.state().queues.len(), TARGETS.len() + 2);
}

#[tokio::test]
async fn an_event_subscription_that_falls_too_far_behind_is_ended() {
    let q = Memory::new();
    let mut sub = q.subscribe(&Source::Instance("slow".into()), 1);
    let batch: Vec<Publish<'static>> = (0..=MAX_INSTANCE_BACKLOG as i64)
        .map(|i| event(i, "job.a"))
        .collect();
    q.publish(&batch);
    let ended = tokio::time::timeout(Duration::from_secs(1), sub.next()).await;
    assert!(matches!(ended, Ok(None)), "the subscription ends");
    // Subscribing again starts afresh.
    let mut again = q.subscribe(&Source::Instance("slow".into()), 1);
    q.publish(&[event(1, "control.capacity")]);
    assert_eq!(next(&mut again).await.id, Some(1));
}

#[tokio::test]
async fn an_event_subscription_holding_too_many_bytes_is_ended() {
    let q = Memory::new();
    let mut sub = q.subscribe(&Source::Instance("slow".into()), 1);
    // A few large bursts, far fewer than the message bound.
    let big = vec![b' '; 1 << 20];
    let bursts = MAX_INSTANCE_BACKLOG_BYTES / big.len() + 1;
    let batch: Vec<Publish<'_>> = (0..bursts as i64)
        .map(|i| Publish {
            id: i,
            exchange: Exchange::Events,
            routing_key: "job.a",
            payload: &big,
            priority: 0,
        })
        .collect();
    assert!(bursts < MAX_INSTANCE_BACKLOG);
    q.publish(&batch);
    let ended = tokio::time::timeout(Duration::from_secs(1), sub.next()).await;
    assert!(matches!(ended, Ok(None)), "the subscription ends");
}
