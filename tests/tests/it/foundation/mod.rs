//! Foundation: migrations, the outbox relay under a broker restart, and streaming blob stores
//! with a bounded memory footprint.

mod blob_streams;
mod migrations;
mod outbox;
mod tls;
