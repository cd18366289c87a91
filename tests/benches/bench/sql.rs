//! Counting the hub's SQL: every statement sqlx runs is logged under `sqlx::query` (with its
//! first words as `summary`), so a layer on the bench's subscriber can count statements and
//! commits while the hub runs in this process. With `PERRY_BENCH_SQL_TOP=N` it also keeps each
//! statement's text, and [`print_top`] lists the N most frequent per build.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
};

use tracing::{field::Visit, Subscriber};
use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    layer::{Context, SubscriberExt},
    util::SubscriberInitExt,
    Layer,
};

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);
static DETAIL: AtomicBool = AtomicBool::new(false);
static TEXTS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// Statements and commits so far.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub statements: u64,
    pub commits: u64,
}

/// The counts now.
pub fn counts() -> Counts {
    Counts {
        statements: STATEMENTS.load(Ordering::Relaxed),
        commits: COMMITS.load(Ordering::Relaxed),
    }
}

impl Counts {
    /// What ran since `before`.
    pub fn since(self, before: Self) -> Self {
        Self {
            statements: self.statements - before.statements,
            commits: self.commits - before.commits,
        }
    }
}

/// Whether the statement is a commit; its text (with `PERRY_BENCH_SQL_TOP`); its summary.
struct Summary(bool, Option<String>, Option<String>);

/// A statement's text on one line, shortened to what tells statements apart.
fn squeeze(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(110).collect()
}

impl Visit for Summary {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "db.statement" && DETAIL.load(Ordering::Relaxed) {
            self.1 = Some(squeeze(value));
        }
        if field.name() == "summary" {
            if DETAIL.load(Ordering::Relaxed) {
                self.2 = Some(squeeze(value));
            }
            self.0 = value
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("COMMIT");
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "db.statement" && DETAIL.load(Ordering::Relaxed) {
            self.1 = Some(squeeze(&format!("{value:?}").replace("\\n", " ")));
        }
        if field.name() == "summary" {
            if DETAIL.load(Ordering::Relaxed) {
                self.2 = Some(squeeze(&format!("{value:?}")));
            }
            self.0 = format!("{value:?}")
                .trim_start_matches('"')
                .to_ascii_uppercase()
                .starts_with("COMMIT");
        }
    }
}

struct CountSql;

impl<S: Subscriber> Layer<S> for CountSql {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut commit = Summary(false, None, None);
        event.record(&mut commit);
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
        if commit.0 {
            COMMITS.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(text) = commit.1.filter(|t| !t.is_empty()).or(commit.2) {
            if let Ok(mut texts) = TEXTS.lock() {
                *texts
                    .get_or_insert_with(HashMap::new)
                    .entry(text)
                    .or_default() += 1;
            }
        }
    }
}

/// With `PERRY_BENCH_SQL_TOP=N`: forget the texts seen so far and keep the next ones.
pub fn start_detail() {
    let on = std::env::var("PERRY_BENCH_SQL_TOP").is_ok_and(|v| !v.is_empty());
    DETAIL.store(on, Ordering::Relaxed);
    if let Ok(mut texts) = TEXTS.lock() {
        *texts = None;
    }
}

/// With `PERRY_BENCH_SQL_TOP=N`: the N most frequent statements since [`start_detail`], per
/// build, on stdout.
pub fn print_top(builds: usize) {
    let Some(n) = std::env::var("PERRY_BENCH_SQL_TOP")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    DETAIL.store(false, Ordering::Relaxed);
    let mut rows: Vec<(String, u64)> = TEXTS
        .lock()
        .ok()
        .and_then(|mut t| t.take())
        .unwrap_or_default()
        .into_iter()
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1));
    println!("\n| per build | statement |\n|---|---|");
    for (text, count) in rows.into_iter().take(n) {
        println!(
            "| {:.2} | `{}` |",
            count as f64 / builds.max(1) as f64,
            text.replace('|', "\\|")
        );
    }
}

/// Install the bench's subscriber: warnings to stderr as usual, plus the SQL counter.
pub fn install() {
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(LevelFilter::WARN);
    // sqlx logs statements at DEBUG. A filter with a level (not a closure) keeps the `log`
    // records of tungstenite and lapin, which are TRACE, from being bridged one per frame.
    let count = CountSql.with_filter(Targets::new().with_target("sqlx::query", LevelFilter::DEBUG));
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(count)
        .try_init();
}
