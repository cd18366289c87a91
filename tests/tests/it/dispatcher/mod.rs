//! Dispatcher scenarios over real sockets with simulated workers and CLIs, against real
//! MariaDB and RabbitMQ.

mod backpressure;
mod billing;
mod bursts;
mod completions;
mod faults;
mod handshake;
mod limits;
mod log_stream;
mod ordering;
mod props;
mod sessions;
mod support;
