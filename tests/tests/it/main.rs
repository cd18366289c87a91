//! Integration scenarios against real MariaDB, RabbitMQ and S3 (one test binary).

/// Scenarios that run on both queues: each `async fn name(queue: QueueKind) { … }` becomes a
/// module `name` with three tests: `name::rabbitmq`, `name::in_process` (DEC-35) and
/// `name::one_box` (SQLite, in-process queue, filesystem blobs: nothing installed; DEC-38).
macro_rules! on_both_queues {
    ($($(#[doc = $doc:literal])* async fn $name:ident($queue:ident: QueueKind $(,)?) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario($queue: perry_hub_tests::QueueKind) $body

            #[tokio::test]
            async fn rabbitmq() {
                scenario(perry_hub_tests::QueueKind::RabbitMq).await;
            }

            #[tokio::test]
            async fn in_process() {
                scenario(perry_hub_tests::QueueKind::InProcess).await;
            }

            #[tokio::test]
            async fn one_box() {
                scenario(perry_hub_tests::QueueKind::OneBox).await;
            }
        }
    )*};
}

mod admin;
mod attacks;
mod blob;
mod dispatcher;
mod download;
mod faults;
mod finisher;
mod foundation;
mod ingest;
mod legacy;
mod standalone;
