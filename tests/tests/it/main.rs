//! Integration scenarios against real MariaDB, RabbitMQ and S3 (one test binary).

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
