//! The SQL dialects the hub speaks: MySQL/MariaDB, and SQLite on one box.
//!
//! Statements are written once, in MySQL's form. [`sql`] gives SQLite's form of the few
//! constructs that differ in spelling only; statements that differ in substance (event numbers
//! from `LAST_INSERT_ID(expr)`, named locks) branch on [`Dialect`] where they are made.
//!
//! SQLite has one writer: every transaction starts with `BEGIN IMMEDIATE` ([`begin`]), so a
//! transaction holds the write lock from its first statement, and `FOR UPDATE [SKIP LOCKED]`
//! has nothing left to do. Another writer waits for the lock (the busy timeout) rather than
//! skipping rows, which is what `SKIP LOCKED` amounts to when no row can be locked by anyone else.

use std::borrow::Cow;

use sqlx::{Any, AnyConnection, AnyPool, Transaction};

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL 8 / MariaDB 10.6+.
    MySql,
    /// SQLite 3.35+ (the embedded single-box database).
    Sqlite,
}

impl Dialect {
    /// The dialect of an open connection (or a transaction, through `&*tx`).
    pub fn of(conn: &AnyConnection) -> Self {
        Self::from_backend(conn.backend_name())
    }

    /// The dialect of a pool's connections.
    pub fn of_pool(pool: &AnyPool) -> Self {
        Self::from_backend(pool.connect_options().database_url.scheme())
    }

    fn from_backend(name: &str) -> Self {
        if name.eq_ignore_ascii_case("sqlite") {
            Self::Sqlite
        } else {
            Self::MySql
        }
    }

    /// Whether this is the embedded database.
    pub fn is_sqlite(self) -> bool {
        self == Self::Sqlite
    }
}

/// `statement` in `dialect`'s spelling. MySQL's form is returned as it is; for SQLite:
/// - `FOR UPDATE [SKIP LOCKED]` is dropped (the transaction already holds the write lock);
/// - `INSERT IGNORE` becomes `INSERT OR IGNORE`;
/// - `ON DUPLICATE KEY UPDATE c = VALUES(c)` becomes `ON CONFLICT DO UPDATE SET c = excluded.c`;
/// - `GREATEST`, `LEAST` and `IF` become `MAX`, `MIN` and `IIF`.
pub fn sql(dialect: Dialect, statement: &str) -> Cow<'_, str> {
    match dialect {
        Dialect::MySql => Cow::Borrowed(statement),
        Dialect::Sqlite => Cow::Owned(to_sqlite(statement)),
    }
}

fn to_sqlite(statement: &str) -> String {
    let mut out = statement
        .replace(" FOR UPDATE SKIP LOCKED", "")
        .replace(" FOR UPDATE", "")
        .replace("INSERT IGNORE", "INSERT OR IGNORE")
        .replace("ON DUPLICATE KEY UPDATE", "ON CONFLICT DO UPDATE SET");
    for (from, to) in [("GREATEST(", "MAX("), ("LEAST(", "MIN("), ("IF(", "IIF(")] {
        out = replace_function(&out, from, to);
    }
    delete_with_limit(&replace_values_refs(&out))
}

/// `DELETE FROM t WHERE c LIMIT n` (a bounded batch) as `DELETE FROM t WHERE rowid IN (SELECT
/// rowid FROM t WHERE c LIMIT n)`: SQLite takes `LIMIT` on a `DELETE` only when built with an
/// option the bundled library does not set.
fn delete_with_limit(statement: &str) -> String {
    let Some(rest) = statement.strip_prefix("DELETE FROM ") else {
        return statement.to_owned();
    };
    let (Some(table_end), Some(limit)) = (rest.find(' '), rest.rfind(" LIMIT ")) else {
        return statement.to_owned();
    };
    let table = &rest[..table_end];
    let Some(condition) = rest[table_end..limit].trim().strip_prefix("WHERE ") else {
        return statement.to_owned();
    };
    format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {condition}{})",
        &rest[limit..]
    )
}

/// Replace the function name `from` (with its parenthesis) by `to` where it stands as a word.
fn replace_function(statement: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut rest = statement;
    while let Some(at) = rest.find(from) {
        let word_start = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        out.push_str(&rest[..at]);
        out.push_str(if word_start { to } else { from });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// `VALUES(column)` (MySQL's reference to the row an upsert tried to insert) as `excluded.column`.
fn replace_values_refs(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut rest = statement;
    while let Some(at) = rest.find("VALUES(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "VALUES(".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with(')') {
            out.push_str("excluded.");
            out.push_str(&after[..name_len]);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("VALUES(");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The id an `INSERT` on `conn` just gave its row (an `AUTO_INCREMENT` / `INTEGER PRIMARY
/// KEY` column): MySQL reports it with the statement; SQLite is asked on the same connection.
pub async fn inserted_id(
    conn: &mut AnyConnection,
    result: &sqlx::any::AnyQueryResult,
) -> Result<i64, sqlx::Error> {
    if let Some(id) = result.last_insert_id() {
        return Ok(id);
    }
    sqlx::query_scalar("SELECT last_insert_rowid()")
        .fetch_one(conn)
        .await
}

/// Begin a transaction: `BEGIN IMMEDIATE` on SQLite (take the write lock now, so two writers
/// never deadlock on a lock upgrade), a plain `BEGIN` on MySQL.
pub async fn begin(pool: &AnyPool) -> Result<Transaction<'static, Any>, sqlx::Error> {
    match Dialect::of_pool(pool) {
        Dialect::MySql => pool.begin().await,
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
    }
}

#[cfg(test)]
mod tests {
    use super::{sql, Dialect};

    #[test]
    fn mysql_statements_are_used_as_written() {
        let s = "SELECT id FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED";
        assert_eq!(sql(Dialect::MySql, s), s);
    }

    #[test]
    fn sqlite_gets_its_spelling_of_each_construct() {
        let cases = [
            (
                "SELECT id FROM jobs WHERE id = ? FOR UPDATE SKIP LOCKED",
                "SELECT id FROM jobs WHERE id = ?",
            ),
            ("SELECT a FROM t WHERE id = ? FOR UPDATE", "SELECT a FROM t WHERE id = ?"),
            (
                "INSERT IGNORE INTO t (a) VALUES (?)",
                "INSERT OR IGNORE INTO t (a) VALUES (?)",
            ),
            (
                "INSERT INTO s (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = VALUES(value), updated_ms = VALUES(updated_ms)",
                "INSERT INTO s (name, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
            ),
            (
                "SELECT GREATEST(a, b), LEAST(COALESCE(c, ?), ?), IF(stage >= 2, ?, ?), NOTIF(x)",
                "SELECT MAX(a, b), MIN(COALESCE(c, ?), ?), IIF(stage >= 2, ?, ?), NOTIF(x)",
            ),
            (
                "DELETE FROM rate_events WHERE at_ms < ? LIMIT ?",
                "DELETE FROM rate_events WHERE rowid IN (SELECT rowid FROM rate_events WHERE at_ms < ? LIMIT ?)",
            ),
            ("DELETE FROM t WHERE a = ?", "DELETE FROM t WHERE a = ?"),
        ];
        for (mysql, sqlite) in cases {
            assert_eq!(sql(Dialect::Sqlite, mysql), sqlite, "{mysql}");
        }
    }
}
