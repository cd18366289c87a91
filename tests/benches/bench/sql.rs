//! Counting the hub's SQL: every statement sqlx runs is logged under `sqlx::query` (with its
//! first words as `summary`), so a layer on the bench's subscriber can count statements and
//! commits while the hub runs in this process.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{field::Visit, Subscriber};
use tracing_subscriber::{
    filter::{filter_fn, LevelFilter},
    layer::{Context, SubscriberExt},
    util::SubscriberInitExt,
    Layer,
};

static STATEMENTS: AtomicU64 = AtomicU64::new(0);
static COMMITS: AtomicU64 = AtomicU64::new(0);

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

struct Summary(bool);

impl Visit for Summary {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("COMMIT");
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
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
        let mut commit = Summary(false);
        event.record(&mut commit);
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
        if commit.0 {
            COMMITS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Install the bench's subscriber: warnings to stderr as usual, plus the SQL counter.
pub fn install() {
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(LevelFilter::WARN);
    let count = CountSql.with_filter(filter_fn(|meta| meta.target() == "sqlx::query"));
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(count)
        .try_init();
}
