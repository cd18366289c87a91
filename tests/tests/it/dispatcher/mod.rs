//! Dispatcher scenarios over real sockets with simulated workers and CLIs, against real
//! MariaDB and RabbitMQ.

mod billing;
mod bursts;
mod handshake;
mod limits;
mod ordering;
mod sessions;
mod support;
