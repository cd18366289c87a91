//! What every service process needs at run time: the pool, the blob store, queue handles,
//! the outbox relay, the shutdown token and the task tracker. Built once by `main` (or by a
//! test) and handed to each service's `start`. [`run_service`] is the body of every service
//! binary's `run`.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::AnyPool;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::{AmqpConfig, BlobConfig, DbConfig, HubConfig, ServiceArgs},
    http::{BlobReady, BrokerReady, DbReady, ReadyCheck},
    queue::{outbox::Relay, Queue},
};
use blob::BlobStore;

/// Shared handles of one process. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    /// MySQL pool.
    pub pool: AnyPool,
    /// Tarballs and artifacts.
    pub blob: Arc<dyn BlobStore>,
    /// The queue for consumers (its own RabbitMQ connection).
    pub queue: Queue,
    /// The queue for the outbox relay (publishing; the same in-process queue as `queue`).
    pub publisher: Queue,
    /// Hub-wide settings.
    pub hub: Arc<HubConfig>,
    /// Blob settings (presigning option).
    pub blob_config: Arc<BlobConfig>,
    /// Wakes the outbox relay after a commit.
    pub outbox: Arc<Notify>,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// Tracks background tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    relay: Arc<std::sync::Mutex<Option<Relay>>>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// Connect to MySQL (waiting up to 60 s), open the blob store and prepare the queue.
    /// Nothing is spawned yet; call [`Deps::spawn_relay`] in one place per process.
    pub async fn connect(
        db: &DbConfig,
        amqp: &AmqpConfig,
        blob: &BlobConfig,
        hub: &HubConfig,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let pool = crate::db::connect(db, Duration::from_secs(60)).await?;
        let store = blob.build().await?;
        Ok(Self::from_parts(pool, store, amqp, blob, hub, cancel))
    }

    /// Assemble from existing parts (tests). The queue is RabbitMQ when `amqp` has a URL, else
    /// a new in-process queue.
    pub fn from_parts(
        pool: AnyPool,
        blob: Arc<dyn BlobStore>,
        amqp: &AmqpConfig,
        blob_config: &BlobConfig,
        hub: &HubConfig,
        cancel: CancellationToken,
    ) -> Self {
        let publisher = Queue::from_config(amqp, "publisher");
        let queue = match &publisher {
            Queue::Memory(_) => publisher.clone(),
            Queue::Rabbit(_) => Queue::from_config(amqp, "consumer"),
        };
        let relay = Relay::new(pool.clone(), publisher.clone());
        Self {
            outbox: relay.notifier(),
            pool,
            blob,
            queue,
            publisher,
            hub: Arc::new(hub.clone()),
            blob_config: Arc::new(blob_config.clone()),
            cancel,
            tracker: TaskTracker::new(),
            relay: Arc::new(std::sync::Mutex::new(Some(relay))),
        }
    }

    /// Start the outbox relay (once per process; later calls do nothing).
    pub fn spawn_relay(&self) {
        let relay = self.relay.lock().ok().and_then(|mut r| r.take());
        if let Some(relay) = relay {
            self.tracker.spawn(relay.run(self.cancel.clone()));
        }
    }

    /// Wake the relay after committing outbox rows.
    pub fn notify_outbox(&self) {
        self.outbox.notify_one();
    }

    /// Readiness checks for MySQL, the queue and the blob store.
    pub fn ready_checks(&self) -> Vec<Arc<dyn ReadyCheck>> {
        vec![
            Arc::new(DbReady(self.pool.clone())),
            Arc::new(BrokerReady(self.publisher.clone())),
            Arc::new(BlobReady(self.blob.clone())),
        ]
    }

    /// Serve `app` plus the health routes (`checks` for `/readyz`) on `listener` until the
    /// shutdown token fires, then give open requests and WebSockets up to `grace` to finish,
    /// stop background work within what is left of it, and close connections. The body of
    /// every service's `run`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: axum::Router,
        checks: Vec<Arc<dyn ReadyCheck>>,
        service: &'static str,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let app = crate::http::finish_router(
            app.merge(crate::http::health_router(checks, self.pool.clone())),
        );
        tracing::info!(addr = %listener.local_addr()?, public_url = %self.hub.public_url(), "{service} listening");
        let cancel = self.cancel.clone();
        let serving = crate::http::serve(listener, app, &self.hub.http, async move {
            cancel.cancelled().await
        });
        let (served, deadline) = within_grace(serving, &self.cancel, grace).await;
        self.shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await;
        match served {
            Some(served) => served.map_err(|e| anyhow::anyhow!("serving HTTP: {e}")),
            None => Ok(()),
        }
    }

    /// Cancel background work and wait (up to `grace`) for it to finish; close connections.
    pub async fn shutdown(&self, grace: Duration) {
        // Never less than a moment: tasks that were told to stop usually need only that.
        let grace = grace.max(Duration::from_secs(1));
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within {grace:?}");
        }
        self.queue.close().await;
        self.publisher.close().await;
        self.pool.close().await;
    }
}

/// One service binary, as [`run_service`] runs it.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    /// Name in the log line announcing the listener.
    pub name: &'static str,
    /// Bind address and the hub, MySQL, RabbitMQ and blob store fragments.
    pub args: &'a ServiceArgs,
    /// Whether the service publishes through RabbitMQ: then the outbox relay runs.
    pub uses_broker: bool,
    /// Whether `/readyz` checks the broker. A service that only publishes through the outbox
    /// (ingest) or never talks to it (download) stays ready during a broker outage; one that
    /// consumes (dispatcher, finisher) does not.
    pub ready_needs_broker: bool,
}

/// The body of every service's `run`: connect to MySQL and the blob store, start the outbox
/// relay (when the service uses the broker), build the service's routes with `app`, then serve
/// them with the health routes on `listener` until `cancel` fires, and shut down.
pub async fn run_service<F>(
    service: Service<'_>,
    listener: TcpListener,
    cancel: CancellationToken,
    app: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&Deps) -> anyhow::Result<axum::Router>,
{
    let args = service.args;
    let deps = Deps::connect(&args.db, &args.amqp, &args.blob, &args.hub, cancel)
        .await
        .context("connecting to MySQL and the blob store")?;
    if service.uses_broker {
        deps.spawn_relay();
    }
    let app = app(&deps)?;
    let checks = deps
        .ready_checks()
        .into_iter()
        .filter(|check| service.ready_needs_broker || check.name() != "rabbitmq")
        .collect();
    deps.serve(listener, app, checks, service.name, args.shutdown_grace())
        .await
}

/// Drive `serving` until it ends; once `cancel` fires, give it at most `grace` more. Returns its
/// output (`None` when the grace period ran out and it was dropped) and the deadline by which
/// the rest of the shutdown should be done.
pub async fn within_grace<F: std::future::Future>(
    serving: F,
    cancel: &CancellationToken,
    grace: Duration,
) -> (Option<F::Output>, tokio::time::Instant) {
    tokio::pin!(serving);
    tokio::select! {
        out = &mut serving => return (Some(out), tokio::time::Instant::now() + grace),
        () = cancel.cancelled() => {}
    }
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, serving).await {
        Ok(out) => (Some(out), deadline),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "connections still open when the shutdown grace period ended; closing them"
            );
            (None, deadline)
        }
    }
}

/// Run `fut` on the current runtime, tracked so that shutdown waits for it. Outside a runtime
/// (a drop during process teardown) the work is skipped with a warning.
pub fn spawn_tracked<F>(tracker: &TaskTracker, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(tracker.track_future(fut));
        }
        Err(_) => tracing::warn!("no runtime to finish tracked work"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::within_grace;

    #[tokio::test]
    async fn serving_that_outlives_the_grace_period_is_dropped_at_the_deadline() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.cancel();
        });
        let started = tokio::time::Instant::now();
        let (out, deadline) = within_grace(
            std::future::pending::<()>(),
            &cancel,
            Duration::from_millis(200),
        )
        .await;
        assert!(out.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(tokio::time::Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn serving_that_drains_in_time_returns_its_output_before_the_deadline() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let drains = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            7
        };
        let (out, deadline) = within_grace(drains, &cancel, Duration::from_secs(20)).await;
        assert_eq!(out, Some(7));
        assert!(deadline > tokio::time::Instant::now() + Duration::from_secs(10));
    }
}
