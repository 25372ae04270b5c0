//! State-change webhooks (PROTOCOL §9): the login service emits [`event::StateChange`]s into the
//! [`outbox::Outbox`]; a worker persists them ([`outbox::OutboxWriter`]) and another delivers them
//! ([`delivery::Delivery`]), at least once and in `Seq` order per user, with retries and dead letters.

mod attempt;
pub mod delivery;
pub mod event;
pub mod outbox;
mod queues;
