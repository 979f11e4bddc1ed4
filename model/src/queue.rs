//! Seed 002's concert waiting queue: entry tokens on `waiting-token`, keyed by concertId, and an
//! activator group that enables up to M tokens every N seconds (its consumer's
//! `max.poll.records` and the container's `pause_between_polls_ms`).

use crate::actor::{Command, ExternalCall, Input, Listener, Request, Response, Service};
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};

/// The queue API: each accepted user gets a token, sent to `waiting-token` with key = concertId
/// (one partition for a global queue, or a partition per concert, as the topic is made).
#[derive(Debug)]
pub struct WaitingQueueApi {
    topic: TopicId,
}

impl WaitingQueueApi {
    pub fn new(topic: TopicId) -> Self {
        Self { topic }
    }
}

impl Service for WaitingQueueApi {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        if let Input::Request(Request::EnterQueue { token, concert, user }) = input {
            let message =
                Message { key: Some(u64::from(concert)), value: Event::WaitingToken { token, concert, user } };
            out.push(Command::Produce { token, topic: self.topic, message });
            out.push(Command::Respond { token, response: Response::Ok });
        }
    }
}

/// The activator: enables each token it reads.
#[derive(Debug, Default)]
pub struct TokenActivator;

impl Listener for TokenActivator {
    fn on_record(&mut self, _now: Micros, _record: &Polled, message: &Message, out: &mut Vec<Command>) {
        if let Event::WaitingToken { token, concert, user } = message.value {
            out.push(Command::External { call: ExternalCall::ActivateToken { token, concert, user }, cause: None });
        }
        out.push(Command::Ack);
    }
}
