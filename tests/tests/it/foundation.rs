//! Foundation: migrations, the outbox relay under a broker restart, and streaming blob stores
//! with a bounded memory footprint.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use blob::{BlobStore, ByteStream, PutOptions};
use futures_util::StreamExt;
use perry_hub_tests::WAIT;
use sha2::{Digest, Sha256};
use shared::{
    queue::{
        consumer::{self, Disposition, Source},
        outbox::{self, Relay},
        Broker, Message,
    },
    testing::{self, TestDb},
};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let db = TestDb::new().await;
    // TestDb already migrated once; a second and third run change nothing.
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    shared::db::migrate(&db.pool).await.unwrap();
    shared::db::migrate(&db.pool).await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(
        after,
        i64::try_from(shared::MIGRATOR.iter().count()).unwrap()
    );
    for table in [
        "accounts",
        "api_tokens",
        "licenses",
        "license_usage",
        "rate_events",
        "jobs",
        "job_events",
        "artifacts",
        "download_tokens",
        "downloads",
        "workers",
        "settings",
        "vm_state",
        "outbox",
        "sweep_locks",
    ] {
        assert_eq!(db.count(table, "1 = 0").await, 0, "table {table} exists");
    }
    db.drop_db().await;
}

/// Publish 1 000 outbox rows while RabbitMQ is restarted in the middle of the burst; the
/// consumer must see every id, dropping duplicates itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_relay_delivers_every_row_once_across_a_broker_restart() {
    const TOTAL: usize = 1000;
    let db = TestDb::new().await;
    let amqp = testing::amqp_config();
    let cancel = CancellationToken::new();
    let relay = Relay::new(db.pool.clone(), Broker::new(&amqp, "test-publisher"));
    let wake = relay.notifier();
    tokio::spawn(relay.run(cancel.clone()));

    let seen = Arc::new(Mutex::new((HashSet::<u64>::new(), 0usize)));
    let consumer_broker = Broker::new(&amqp, "test-consumer");
    let queue = consumer_broker.topology().target_queue("linux");
    let s = seen.clone();
    tokio::spawn(consumer::run(
        consumer_broker,
        Source::Queue(queue),
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
        let mut tx = db.pool.begin().await.unwrap();
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

/// A deterministic pseudo-random stream of `total` bytes in 64 KiB chunks, hashed as produced.
fn generated(total: u64, hasher: Arc<Mutex<Sha256>>) -> ByteStream {
    const CHUNK: u64 = 64 * 1024;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let chunks = total.div_ceil(CHUNK);
    Box::pin(futures_util::stream::iter(0..chunks).map(move |i| {
        let len = usize::try_from(CHUNK.min(total - i * CHUNK)).unwrap();
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.extend_from_slice(&state.to_le_bytes());
        }
        buf.truncate(len);
        hasher.lock().unwrap().update(&buf);
        Ok(bytes::Bytes::from(buf))
    }))
}

/// Peak resident memory since the last reset, in KiB (Linux).
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reset the peak-RSS watermark to the current RSS.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn stream_512_mib_each_way(store: Arc<dyn BlobStore>, label: &str) {
    const SIZE: u64 = 512 * 1024 * 1024;
    let key = format!("bench/{}", uuid::Uuid::new_v4());
    reset_peak_rss();
    let base = peak_rss_kib();
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let put = store
        .put(&key, generated(SIZE, hasher.clone()), PutOptions::new(SIZE))
        .await
        .unwrap();
    let produced: [u8; 32] = hasher.lock().unwrap().clone().finalize().into();
    assert_eq!(put.size, SIZE);
    assert_eq!(
        put.sha256, produced,
        "hash computed while streaming matches"
    );
    let mut obj = store.get(&key, None).await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = obj.body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, SIZE);
    assert_eq!(<[u8; 32]>::from(h.finalize()), produced);
    let grew_mib = peak_rss_kib().saturating_sub(base) / 1024;
    println!("{label}: streamed 512 MiB each way; peak RSS grew by {grew_mib} MiB");
    // One 8 MiB part buffer (S3) plus I/O buffers: far below the object size.
    assert!(
        grew_mib < 64,
        "{label}: peak RSS grew by {grew_mib} MiB while streaming 512 MiB"
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn filesystem_store_streams_512_mib_each_way_in_bounded_memory() {
    let dir = perry_hub_tests::tempdir::TempDir::new("perry-fs-stream");
    let store: Arc<dyn BlobStore> = Arc::new(blob::FsBlobStore::new(dir.0.clone()).unwrap());
    stream_512_mib_each_way(store, "fs").await;
}

#[tokio::test]
async fn s3_store_streams_512_mib_each_way_in_bounded_memory() {
    let (store, _) = testing::s3_store().await;
    stream_512_mib_each_way(store, "s3").await;
}

#[tokio::test]
async fn oversized_put_fails_and_leaves_no_object_in_s3() {
    let (store, _) = testing::s3_store().await;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let err = store
        .put(
            "tarballs/too-big",
            generated(20 * 1024 * 1024, hasher),
            PutOptions::new(10 * 1024 * 1024),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, blob::BlobError::TooLarge { limit } if limit == 10 * 1024 * 1024));
    assert!(
        store.list("").await.unwrap().is_empty(),
        "nothing is left behind"
    );
    let _ = WAIT;
}
