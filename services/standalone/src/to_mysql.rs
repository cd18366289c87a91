//! `perry-hub migrate-to-mysql`: move a one-box hub's data from its SQLite file to MySQL, for
//! when it outgrows one machine (DEC-38).
//!
//! The hub must be stopped (its lock file is taken for the copy). Every table is copied row by
//! row with its ids, in one MySQL transaction, into a database that has no data yet: an
//! interrupted copy leaves nothing behind, and a copy is never mixed with other data. The row
//! counts are compared afterwards, and every queued job is announced again, so the MySQL hub
//! offers them at once whatever queue it runs on.

use std::{fmt, path::Path};

use futures_util::TryStreamExt as _;
use sqlx::{
    any::{AnyRow, AnyTypeInfoKind},
    Any, AnyPool, Column as _, Decode, QueryBuilder, Row as _, ValueRef as _,
};

use crate::queue_lock;

/// Every table of the schema, parents before the tables that refer to them.
pub const TABLES: &[&str] = &[
    "accounts",
    "api_tokens",
    "licenses",
    "license_usage",
    "jobs",
    "job_events",
    "job_attempts",
    "artifacts",
    "download_tokens",
    "downloads",
    "rate_events",
    "rate_buckets",
    "workers",
    "worker_drains",
    "dispatchers",
    "settings",
    "vm_state",
    "outbox",
    "sweep_locks",
];

/// Tables that hold a hub's data: the MySQL database must have no row in any of them. The
/// others hold rows a hub writes by itself at start (sweep locks, settings), which the copy
/// replaces.
const DATA_TABLES: &[&str] = &[
    "accounts",
    "licenses",
    "jobs",
    "job_events",
    "artifacts",
    "outbox",
];

/// Rows per multi-row insert.
const CHUNK: usize = 200;

/// What a copy did: the rows of each table, and the queued jobs announced again.
#[derive(Debug, Default)]
pub struct Report {
    /// `(table, rows)` in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// Queued jobs announced again on MySQL.
    pub announced: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, rows) in &self.tables {
            writeln!(f, "{table:<16} {rows:>10} rows")?;
        }
        write!(f, "queued jobs announced again: {}", self.announced)
    }
}

/// Copy the embedded database at `source_file` (opened as `source`) into `target` (MySQL,
/// migrated here). Refuses with `HUB_RUNNING` while a hub holds the file, and with
/// `MYSQL_NOT_EMPTY` when the MySQL database already has data.
pub async fn run(source_file: &Path, source: &AnyPool, target: &AnyPool) -> anyhow::Result<Report> {
    let Some(_lock) = queue_lock::lock_file(source_file)? else {
        anyhow::bail!(
            "HUB_RUNNING: a perry-hub runs on {}; stop it before moving its data",
            source_file.display()
        );
    };
    shared::db::migrate(source).await?;
    shared::db::migrate(target).await?;
    for table in DATA_TABLES {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(target)
            .await?;
        if rows > 0 {
            anyhow::bail!(
                "MYSQL_NOT_EMPTY: the MySQL database already has {rows} rows in `{table}`; \
                 migrate-to-mysql copies into a database with no data (create a new one)"
            );
        }
    }
    let mut report = Report::default();
    let mut tx = shared::db::begin(target).await?;
    for table in TABLES {
        let copied = copy_table(source, &mut tx, table).await?;
        report.tables.push((table, copied));
    }
    tx.commit().await?;
    for (table, copied) in &report.tables {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(target)
            .await?;
        anyhow::ensure!(
            u64::try_from(rows).ok() == Some(*copied),
            "`{table}` has {rows} rows on MySQL after copying {copied}"
        );
    }
    report.announced = finisher::reannounce::announce_all_queued(target).await?;
    Ok(report)
}

/// Copy one table's rows, in chunks of [`CHUNK`]; returns how many.
async fn copy_table(
    source: &AnyPool,
    target: &mut sqlx::AnyConnection,
    table: &'static str,
) -> anyhow::Result<u64> {
    let select = format!("SELECT * FROM {table}");
    let mut rows = sqlx::query(&select).fetch(source);
    let mut chunk: Vec<Vec<Value>> = Vec::with_capacity(CHUNK);
    let mut columns: Vec<String> = Vec::new();
    let mut copied = 0;
    while let Some(row) = rows.try_next().await? {
        if columns.is_empty() {
            columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        chunk.push(values(&row)?);
        if chunk.len() == CHUNK {
            copied += insert(target, table, &columns, &mut chunk).await?;
        }
    }
    copied += insert(target, table, &columns, &mut chunk).await?;
    Ok(copied)
}

/// Insert (or, for the rows a hub writes at start, replace) `rows`, emptying it.
async fn insert(
    target: &mut sqlx::AnyConnection,
    table: &str,
    columns: &[String],
    rows: &mut Vec<Vec<Value>>,
) -> anyhow::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut insert =
        QueryBuilder::<Any>::new(format!("REPLACE INTO {table} ({}) ", columns.join(", ")));
    let n = rows.len();
    insert.push_values(rows.drain(..), |mut b, row| {
        for value in row {
            match value {
                Value::Null => b.push_bind(None::<i64>),
                Value::Int(v) => b.push_bind(v),
                Value::Real(v) => b.push_bind(v),
                Value::Text(v) => b.push_bind(v),
                Value::Blob(v) => b.push_bind(v),
            };
        }
    });
    insert.build().execute(&mut *target).await?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// A value as SQLite stored it.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row's values, by the storage class of each.
fn values(row: &AnyRow) -> anyhow::Result<Vec<Value>> {
    let mut values = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        let value = match raw.type_info().kind() {
            _ if raw.is_null() => Ok(Value::Null),
            AnyTypeInfoKind::Null => Ok(Value::Null),
            AnyTypeInfoKind::Bool => {
                <bool as Decode<Any>>::decode(raw).map(|v| Value::Int(v.into()))
            }
            AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                <i64 as Decode<Any>>::decode(raw).map(Value::Int)
            }
            AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => {
                <f64 as Decode<Any>>::decode(raw).map(Value::Real)
            }
            AnyTypeInfoKind::Text => <String as Decode<Any>>::decode(raw).map(Value::Text),
            AnyTypeInfoKind::Blob => <Vec<u8> as Decode<Any>>::decode(raw).map(Value::Blob),
        };
        values.push(value.map_err(|e| anyhow::anyhow!("reading column {i}: {e}"))?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::{DATA_TABLES, TABLES};

    #[test]
    fn the_data_tables_are_copied_tables() {
        for table in DATA_TABLES {
            assert!(TABLES.contains(table), "{table}");
        }
    }
}
