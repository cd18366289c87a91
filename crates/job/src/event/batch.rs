//! A burst of a worker's frames, stored by one group commit (DEC-14) in inserts of a few fixed
//! sizes (DEC-36).

use shared::{
    clock::now_ms,
    queue::{Message, RawFrame},
};
use sqlx::AnyConnection;

use super::{bump_seq, Event};
use crate::Result;

/// Append a burst of events in one group commit: one sequence bump and a few multi-row
/// inserts ([`insert_chunks`]), in the caller's transaction. Returns the sequence number of the
/// first (the others follow it without a gap) and the burst's fan-out message, which the
/// caller publishes once the transaction committed (DEC-37: not an outbox row; a lost one is
/// caught up from MySQL). `origin` names the dispatcher instance that hands them to its own
/// subscribers itself (the message skips it).
pub async fn append_batch(
    conn: &mut AnyConnection,
    job_id: &str,
    events: &[Event],
    origin: &str,
) -> Result<(i64, Message)> {
    // Each event is encoded once: the stored payload and the fan-out message share the text.
    let frames = events
        .iter()
        .map(RawFrame::encode)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let first = if events.is_empty() {
        0
    } else {
        insert_batch(conn, job_id, events, &frames).await?
    };
    Ok((
        first,
        Message::JobEvents {
            job_id: job_id.to_owned(),
            first_seq: first,
            frames,
            origin: origin.to_owned(),
        },
    ))
}

/// Number and store a non-empty burst; returns the first number.
async fn insert_batch(
    conn: &mut AnyConnection,
    job_id: &str,
    events: &[Event],
    frames: &[RawFrame],
) -> Result<i64> {
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let last = bump_seq(conn, job_id, count).await?;
    let first = last - count + 1;
    let now = now_ms();
    let texts: Vec<_> = frames.iter().map(RawFrame::text).collect();
    let mut rows = events.iter().zip(&texts).zip(first..);
    for size in insert_chunks(events.len()) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Any>::new(
            "INSERT INTO job_events (job_id, seq, kind, payload, created_ms) ",
        );
        insert.push_values(rows.by_ref().take(size), |mut row, ((event, text), seq)| {
            row.push_bind(job_id)
                .push_bind(seq)
                .push_bind(event.kind())
                .push_bind(&**text)
                .push_bind(now);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(first)
}

/// Largest multi-row insert of events.
const MAX_INSERT_ROWS: usize = 256;

/// How a burst of `n` events is split into multi-row inserts: as many of
/// [`MAX_INSERT_ROWS`] as fit, then powers of two, largest first. A prepared statement exists
/// per row count, so only nine statement texts are ever prepared (and stay in each
/// connection's statement cache) instead of one per burst size, which made the server parse
/// a new statement of up to thousands of placeholders for nearly every burst.
fn insert_chunks(mut n: usize) -> Vec<usize> {
    let mut chunks = Vec::new();
    while n >= MAX_INSERT_ROWS {
        chunks.push(MAX_INSERT_ROWS);
        n -= MAX_INSERT_ROWS;
    }
    let mut size = MAX_INSERT_ROWS / 2;
    while size > 0 {
        if n >= size {
            chunks.push(size);
            n -= size;
        }
        size /= 2;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_inserted_in_a_few_fixed_sizes() {
        assert_eq!(insert_chunks(0), Vec::<usize>::new());
        assert_eq!(insert_chunks(1), vec![1]);
        assert_eq!(insert_chunks(45), vec![32, 8, 4, 1]);
        assert_eq!(insert_chunks(1024), vec![256; 4]);
        assert_eq!(insert_chunks(600), vec![256, 256, 64, 16, 8]);
        for n in 0..2000 {
            let chunks = insert_chunks(n);
            assert_eq!(chunks.iter().sum::<usize>(), n);
            assert!(chunks
                .iter()
                .all(|c| c.is_power_of_two() && *c <= MAX_INSERT_ROWS));
        }
    }
}
