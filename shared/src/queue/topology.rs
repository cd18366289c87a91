//! Broker object names, all derived from one prefix, and the declaration of every durable
//! exchange and queue.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

use super::{Exchange, Result, FINISHER_ROUTING_KEY, MAX_PRIORITY, TARGETS};

/// Broker object names, all derived from one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// The broker name of a logical exchange.
    pub fn exchange(&self, e: Exchange) -> String {
        format!("{}.{}", self.prefix, e.as_str())
    }
    /// Dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    /// Queue collecting dead letters for inspection.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    /// The queue of one target.
    pub fn target_queue(&self, target: &str) -> String {
        format!("{}.target.{target}", self.prefix)
    }
    /// The finisher's durable queue.
    pub fn finisher_queue(&self) -> String {
        format!("{}.finisher", self.prefix)
    }
    /// A dispatcher instance's private events queue.
    pub fn instance_queue(&self, instance: &str) -> String {
        format!("{}.instance.{instance}", self.prefix)
    }

    /// Declare every durable object. Idempotent; safe from any number of processes.
    pub async fn declare(&self, ch: &Channel) -> Result<()> {
        // Durable exchanges survive broker restarts; nothing is auto-deleted.
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        ch.exchange_declare(
            self.exchange(Exchange::Jobs).into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.exchange(Exchange::Events).into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
        let queue_opts = QueueDeclareOptions {
            // Survive a broker restart together with the persistent messages in it.
            durable: true,
            // Shared by every dispatcher replica.
            exclusive: false,
            // Must outlive consumers: jobs wait here while no worker is connected.
            auto_delete: false,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(
            self.dead_letter_queue().into(),
            queue_opts,
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            self.dead_letter_queue().into(),
            self.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        for target in TARGETS {
            let mut args = FieldTable::default();
            // Classic queue with priorities (pro 10 above free 1); quorum queues reject
            // x-max-priority before RabbitMQ 4.0.
            args.insert(
                "x-max-priority".into(),
                AMQPValue::ShortShortUInt(MAX_PRIORITY),
            );
            // Rejected (undecodable) messages are kept for inspection instead of dropped.
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(self.dead_letter_exchange().into()),
            );
            let q = self.target_queue(target);
            ch.queue_declare(q.clone().into(), queue_opts, args).await?;
            ch.queue_bind(
                q.into(),
                self.exchange(Exchange::Jobs).into(),
                (*target).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.dead_letter_exchange().into()),
        );
        ch.queue_declare(self.finisher_queue().into(), queue_opts, args)
            .await?;
        ch.queue_bind(
            self.finisher_queue().into(),
            self.exchange(Exchange::Jobs).into(),
            FINISHER_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// Declare a dispatcher instance's private queue bound to all events and control messages.
    pub async fn declare_instance_queue(&self, ch: &Channel, instance: &str) -> Result<String> {
        let name = self.instance_queue(instance);
        let opts = QueueDeclareOptions {
            // Live fan-out only: history is in MySQL, so the queue dies with its consumer.
            durable: false,
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(name.clone().into(), opts, FieldTable::default())
            .await?;
        for key in ["job.#", "control.#"] {
            ch.queue_bind(
                name.clone().into(),
                self.exchange(Exchange::Events).into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_names_share_the_prefix() {
        let t = Topology::new("p1");
        assert_eq!(t.target_queue("windows-sign"), "p1.target.windows-sign");
        assert_eq!(t.exchange(Exchange::Events), "p1.events");
        assert_eq!(Exchange::parse("jobs"), Some(Exchange::Jobs));
        assert_eq!(Exchange::parse("nope"), None);
    }
}
