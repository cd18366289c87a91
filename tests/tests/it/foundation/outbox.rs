//! The outbox relay across a broker restart, with a deleted queue, and on the in-process queue.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use shared::{
    queue::{
        consumer::{self, Disposition, Source},
        outbox::{self, Relay},
        Broker, Message,
    },
    testing::{self, TestDb},
};
use tokio_util::sync::CancellationToken;

/// Publish 1 000 outbox rows while RabbitMQ is restarted in the middle of the burst; the
/// consumer must see every id, dropping duplicates itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_relay_delivers_every_row_once_across_a_broker_restart() {
    const TOTAL: usize = 1000;
    let db = TestDb::new().await;
    let amqp = testing::amqp_config();
    let cancel = CancellationToken::new();
    let relay = Relay::new(db.pool.clone(), Broker::new(&amqp, "test-publisher").into());
    let wake = relay.notifier();
    tokio::spawn(relay.run(cancel.clone()));

    let seen = Arc::new(Mutex::new((HashSet::<u64>::new(), 0usize)));
    let consumer_broker = Broker::new(&amqp, "test-consumer");
    let s = seen.clone();
    tokio::spawn(consumer::run(
        consumer_broker.into(),
        Source::Target("linux".into()),
        50,
        cancel.clone(),
        || async {},
        move |r| {
            let s = s.clone();
            async move {
                let mut g = s.lock().unwrap();
                if let Some(id) = r.id {
                    if !g.0.insert(id) {
                        g.1 += 1;
                    }
                }
                Disposition::Ack
            }
        },
    ));

    // Write the burst in small transactions, restarting the broker a third of the way in.
    let restart_at = TOTAL / 3;
    let mut restart = None;
    for i in 0..TOTAL {
        let mut tx = shared::db::begin(&db.pool).await.unwrap();
        let msg = Message::JobQueued {
            job_id: format!("job-{i}"),
            target: "linux".into(),
            attempt: 0,
            priority: 1,
        };
        outbox::enqueue(&mut tx, &msg).await.unwrap();
        tx.commit().await.unwrap();
        wake.notify_one();
        if i == restart_at {
            restart = Some(tokio::spawn(restart_broker()));
        }
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    restart.expect("restart started").await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = seen.lock().unwrap().0.len();
        if n == TOTAL {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {TOTAL} messages arrived"
        );
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unsent = db.count("outbox", "sent_ms IS NULL").await;
    assert_eq!(unsent, 0, "every row is marked sent");
    let (ids, dups) = {
        let g = seen.lock().unwrap();
        (g.0.clone(), g.1)
    };
    let expected: HashSet<u64> = sqlx::query_scalar::<_, i64>("SELECT id FROM outbox")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|i| u64::try_from(i).unwrap())
        .collect();
    assert_eq!(ids, expected, "exactly the outbox ids were delivered");
    println!("broker restart: {TOTAL} delivered, {dups} duplicates dropped by the consumer");
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "09-broker-restart",
        fault: "RabbitMQ restarted while 1 000 messages are published",
        outcome: format!(
            "The outbox kept every message until the broker confirmed it: all {TOTAL} reached the consumer once ({dups} redeliveries dropped by outbox id), none left unsent."
        ),
        test: "foundation::outbox::outbox_relay_delivers_every_row_once_across_a_broker_restart",
    });
    cancel.cancel();
    testing::cleanup_amqp(&amqp).await;
    db.drop_db().await;
}

async fn restart_broker() {
    let cmd = std::env::var("PERRY_TEST_RABBITMQ_RESTART").unwrap_or_else(|_| {
        "rabbitmqctl -q stop_app && rabbitmqctl -q start_app && rabbitmqctl -q await_startup".into()
    });
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .status()
        .await
        .expect("run restart command");
    assert!(status.success(), "broker restart command failed: {cmd}");
}

/// A job queue deleted behind the hub's back (by hand, or a broker that lost its definitions):
/// the relay publishes job messages as mandatory, so the broker returns them instead of
/// dropping them, and the relay declares the queues again and publishes them once more.
#[tokio::test]
async fn a_job_message_for_a_deleted_queue_comes_back_and_is_routed_after_redeclaring() {
    let db = TestDb::new().await;
    let amqp = testing::amqp_config();
    let cancel = CancellationToken::new();
    let broker = Broker::new(&amqp, "test-publisher");
    let queue = broker.topology().target_queue("linux");
    let relay = Relay::new(db.pool.clone(), broker.clone().into());
    let wake = relay.notifier();
    tokio::spawn(relay.run(cancel.clone()));
    let enqueue = |i: usize| {
        let pool = db.pool.clone();
        async move {
            let mut tx = shared::db::begin(&pool).await.unwrap();
            let msg = Message::JobQueued {
                job_id: format!("job-{i}"),
                target: "linux".into(),
                attempt: 1,
                priority: 1,
            };
            outbox::enqueue(&mut tx, &msg).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    let all_sent = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while db.count("outbox", "sent_ms IS NULL").await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
            wake.notify_one();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    enqueue(0).await;
    wake.notify_one();
    all_sent().await;
    assert_eq!(broker.ready_messages(&queue).await.unwrap(), 1);

    // The queue (and the message in it) disappears; the relay's connection stays up.
    let ch = broker.channel().await.unwrap();
    ch.queue_delete(
        queue.as_str().into(),
        lapin::options::QueueDeleteOptions::default(),
    )
    .await
    .unwrap();
    assert!(broker.ready_messages(&queue).await.is_err(), "queue gone");

    enqueue(1).await;
    enqueue(2).await;
    wake.notify_one();
    all_sent().await;
    assert_eq!(
        broker.ready_messages(&queue).await.unwrap(),
        2,
        "both messages routed to the declared-again queue"
    );
    cancel.cancel();
    testing::cleanup_amqp(&amqp).await;
    db.drop_db().await;
    perry_hub_tests::fault_log::record(&perry_hub_tests::fault_log::Fault {
        slug: "11-queue-deleted",
        fault: "A job queue deleted while the hub runs",
        outcome: "Job messages are mandatory: the broker returned them, the relay declared the queues again and both messages reached the new queue (DEC-20).".to_owned(),
        test: "foundation::outbox::a_job_message_for_a_deleted_queue_comes_back_and_is_routed_after_redeclaring",
    });
}

/// On the in-process queue the relay gets the same answer for a job message no queue takes: it
/// comes back unroutable, is dropped after the second try (not retried forever), and the rows
/// around it are delivered and marked sent.
#[tokio::test]
async fn on_the_in_process_queue_an_unroutable_job_message_is_dropped_and_the_rest_delivered() {
    let db = TestDb::new().await;
    let queue = shared::queue::Queue::Memory(shared::queue::memory::Memory::new());
    let cancel = CancellationToken::new();
    let relay = Relay::new(db.pool.clone(), queue.clone());
    let wake = relay.notifier();
    tokio::spawn(relay.run(cancel.clone()));
    let mut tx = shared::db::begin(&db.pool).await.unwrap();
    for target in ["linux", "no-such-target", "linux"] {
        let msg = Message::JobQueued {
            job_id: format!("job-{target}"),
            target: target.into(),
            attempt: 1,
            priority: 1,
        };
        outbox::enqueue(&mut tx, &msg).await.unwrap();
    }
    tx.commit().await.unwrap();
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while db.count("outbox", "sent_ms IS NULL").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Counted as an outbox error (nextest runs each test in its own process).
    assert_eq!(shared::metrics::get().outbox_errors.get(), 1);
    let linux = Source::Target("linux".into());
    assert_eq!(queue.ready(&linux).await.unwrap(), 2);
    let mut sub = queue.subscribe(&linux, 10).await.unwrap();
    let first = sub.next().await.unwrap().unwrap();
    assert!(matches!(
        first.decode().unwrap(),
        Message::JobQueued { ref target, .. } if target == "linux"
    ));
    cancel.cancel();
    db.drop_db().await;
}
