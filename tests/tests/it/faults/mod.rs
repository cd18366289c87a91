//! The fault suite (issue 12): the hub as separate processes and in process, against real
//! MariaDB, S3 and a private RabbitMQ node (`scripts/fault-services.sh`, never the shared one),
//! driven by clients that behave like the real ones (`perry_hub_tests::chaos`), while parts of
//! it are killed.

mod load;
mod verdict;
