//! A worker's leases while its socket lives, and what happens to its jobs when it goes.

use job::transition;
use shared::clock::now_ms;

use super::{Session, UPDATE_TIMEOUT};

impl Session<'_> {
    /// Renew the leases of this worker's jobs and its presence while the socket is alive.
    pub(super) async fn renew_leases_periodically(&self, socket: crate::conn::SocketTx) {
        let period = std::time::Duration::from_secs((self.ctx.settings.lease_secs / 3).max(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        let silence_ms =
            i64::try_from(self.ctx.settings.silence_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        loop {
            tick.tick().await;
            if socket.phase() != crate::conn::Phase::Open {
                return;
            }
            let now = now_ms();
            if now - socket.last_seen() > silence_ms {
                continue;
            }
            self.ctx.registry.expire_update(self.id, UPDATE_TIMEOUT);
            let pool = &self.ctx.deps.pool;
            let held = self.ctx.registry.held_jobs(self.id);
            let until = now + self.ctx.settings.lease_ms();
            let renewed = match pool.acquire().await {
                Ok(mut conn) => transition::renew_leases(&mut conn, self.id, &held, until).await,
                Err(e) => Err(e),
            };
            let seen = sqlx::query("UPDATE workers SET last_seen_ms = ? WHERE id = ?")
                .bind(now)
                .bind(self.id)
                .execute(pool)
                .await;
            if let Err(error) = renewed
                .map_err(anyhow::Error::from)
                .and(seen.map_err(anyhow::Error::from))
            {
                tracing::warn!(%error, worker = %self.name, "lease renewal failed");
            }
        }
    }

    /// The socket is gone: keep its jobs for the re-attach window, then the finisher requeues.
    pub(super) async fn disconnected(&self) {
        let held = self.ctx.registry.remove_worker(self.id);
        let now = now_ms();
        let window = self.ctx.settings.reattach_ms();
        let pool = &self.ctx.deps.pool;
        let _ = sqlx::query("UPDATE workers SET disconnected_ms = ? WHERE id = ?")
            .bind(now)
            .bind(self.id)
            .execute(pool)
            .await;
        let shortened = async {
            let mut tx = shared::db::begin(pool).await?;
            transition::shorten_leases(&mut tx, self.id, &held, now + window).await?;
            tx.commit().await?;
            Ok::<(), job::Error>(())
        }
        .await;
        if !held.is_empty() {
            self.ctx.deps.notify_outbox();
        }
        if let Err(error) = shortened {
            tracing::warn!(%error, worker = %self.name, "cannot shorten the leases of a lost worker's jobs");
        }
        tracing::info!(worker = %self.name, jobs = held.len(), "worker disconnected");
    }
}
