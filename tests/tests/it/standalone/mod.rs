//! The all-in-one `perry-hub` as its binary runs it: `standalone::run` on the HTTP port and the
//! legacy WebSocket port, from settings to shutdown; and its queue, in-process or RabbitMQ.

mod queue;
mod run;
mod to_mysql;
