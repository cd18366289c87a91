//! Whole builds under load: simulated CLIs submit, follow and download while simulated workers
//! fetch tarballs, upload artifacts and complete. Reports builds per second and the CPU time of
//! this process (hub plus simulated clients), MariaDB and RabbitMQ per build, from `/proc`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use perry_hub_tests::{sim, QueueKind, TestHub};

use crate::events::{on, Row};

/// Builds in the run (`PERRY_BENCH_BUILDS` overrides).
const BUILDS: usize = 500;
const CLIS: usize = 32;
const WORKERS: usize = 50;
const SLOTS: u32 = 2;
const ARTIFACT: &[u8] = b"a small linux artifact, as uploaded by every simulated worker";

/// Run the builds; rows for builds/s and CPU per build.
pub async fn end_to_end(queue: QueueKind) -> Vec<Row> {
    let builds = std::env::var("PERRY_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BUILDS);
    let hub = Arc::new(crate::events::hub(queue).await);
    let (key, _) = hub.insert_license("pro").await;
    let mut workers = Vec::with_capacity(WORKERS);
    for i in 0..WORKERS {
        workers.push(
            sim::spawn_building_worker(hub.clone(), &format!("sim-{i}"), SLOTS, ARTIFACT).await,
        );
    }
    let outbox = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox")
            .fetch_one(hub.pool())
            .await
            .unwrap_or(0)
    };
    let (messages_before, sql_before) = (outbox().await, crate::sql::counts());
    crate::sql::start_detail();
    let before = Cpu::sample();
    let started = Instant::now();
    let (done, failed) = run_clis(&hub, &key, builds).await;
    let wall = started.elapsed();
    let cpu = Cpu::sample().since(&before);
    let sql = crate::sql::counts().since(sql_before);
    let messages = outbox().await - messages_before;
    crate::sql::print_top(done);
    for w in &workers {
        w.abort();
    }
    for w in workers {
        let _ = w.await;
    }
    // Let the hub notice the closed worker sockets before its pool closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_shared(hub).await;
    let mut rows = rows(queue, builds, done, failed, wall, &cpu);
    let per = |n: f64| n / done.max(1) as f64;
    rows.push((
        on(
            queue,
            "Per build: SQL statements / transactions / broker messages",
        ),
        if queue == QueueKind::OneBox {
            // sqlx's SQLite driver does not log its BEGIN and COMMIT, so there is no count.
            format!(
                "{:.1} / — / {:.1}",
                per(sql.statements as f64),
                per(messages as f64)
            )
        } else {
            format!(
                "{:.1} / {:.1} / {:.1}",
                per(sql.statements as f64),
                per(sql.commits as f64),
                per(messages as f64)
            )
        },
        "every statement the hub ran during the run (sqlx's statement log, counted in process; \
         includes lease renewals and relay polls), commits, and outbox rows (each one broker \
         message)"
            .to_owned(),
    ));
    rows
}

/// `CLIS` concurrent CLIs taking builds from a shared counter; (succeeded, failed).
async fn run_clis(hub: &Arc<TestHub>, key: &str, builds: usize) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clis = Vec::with_capacity(CLIS);
    for _ in 0..CLIS {
        let (hub, key, next, ok) = (hub.clone(), key.to_owned(), next.clone(), ok.clone());
        clis.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < builds {
                let build = sim::cli_build(&hub, &key).await;
                if build.success && build.artifact.as_deref() == Some(ARTIFACT) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for c in clis {
        // A panicking CLI (timeout, refused request) stops taking builds; the rest go on.
        let _ = c.await;
    }
    let ok = ok.load(Ordering::Relaxed);
    (ok, builds - ok)
}

fn rows(
    queue: QueueKind,
    builds: usize,
    done: usize,
    failed: usize,
    wall: Duration,
    cpu: &Cpu,
) -> Vec<Row> {
    let per_build = |ticks: u64| ticks as f64 * 1000.0 / cpu.hz / done.max(1) as f64;
    let shape = format!(
        "{builds} builds, {CLIS} CLIs, {WORKERS} workers × {SLOTS} slots; \
         submit → assign → tarball → upload → complete → CLI downloads"
    );
    vec![
        (
            on(queue, "End-to-end builds/s"),
            format!("{:.1}", done as f64 / wall.as_secs_f64()),
            format!(
                "{shape}; {done} succeeded, {failed} failed, {:.1} s wall",
                wall.as_secs_f64()
            ),
        ),
        (
            on(queue, "CPU per build: hub / MariaDB / RabbitMQ"),
            if queue == QueueKind::OneBox {
                // SQLite runs inside the hub: its CPU is the hub's.
                format!("{:.1} ms / — / —", per_build(cpu.hub))
            } else {
                format!(
                    "{:.1} ms / {:.1} ms / {:.1} ms",
                    per_build(cpu.hub),
                    per_build(cpu.mariadb),
                    per_build(cpu.rabbitmq)
                )
            },
            "utime+stime from /proc over the run. Hub = this process, which also runs the \
             simulated CLIs and workers (nothing subtracted); mariadbd and beam.smp are shared \
             with anything else using them on this machine"
                .to_owned(),
        ),
    ]
}

/// Stop a hub once every simulated actor has dropped its handle.
async fn stop_shared(mut hub: Arc<TestHub>) {
    for _ in 0..100 {
        match Arc::try_unwrap(hub) {
            Ok(h) => return h.stop().await,
            Err(h) => hub = h,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("   (hub still shared after 5 s; its database is left behind)");
}

/// CPU ticks (utime + stime) of this process, MariaDB and RabbitMQ.
struct Cpu {
    hub: u64,
    mariadb: u64,
    rabbitmq: u64,
    hz: f64,
}

impl Cpu {
    fn sample() -> Self {
        Self {
            hub: ticks("self"),
            mariadb: by_comm("mariadbd"),
            rabbitmq: by_comm("beam.smp"),
            hz: clock_ticks(),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            hub: self.hub.saturating_sub(before.hub),
            mariadb: self.mariadb.saturating_sub(before.mariadb),
            rabbitmq: self.rabbitmq.saturating_sub(before.rabbitmq),
            hz: self.hz,
        }
    }
}

/// utime + stime of `/proc/<pid>/stat` (fields 14 and 15; the command name may hold spaces,
/// so count from the closing parenthesis).
fn ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Summed ticks of every process whose `comm` is `name`.
fn by_comm(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .map(|pid| ticks(&pid))
        .sum()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
