//! The one trait every notification sink implements.
//!
//! A sink only delivers; the queue, the worker task, counting and turning
//! failures into `dropped` lines live in [`super::queue`], so a new sink is
//! one new file with one `impl Sink`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use shared_schema::AlertLine;
use tokio::time::Instant;

use super::group::Group;

/// A boxed future, so [`Sink`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Somewhere alert events go. Each sink runs on its own worker task, so it
/// may take its time (retries, backoff) without holding up anything else.
pub trait Sink: Send + 'static {
    /// How many queued events the worker hands over at once.
    fn max_batch(&self) -> usize {
        1
    }

    /// Delivers `lines` (in order) and returns those it gave up on; the
    /// worker turns them into `dropped` lines.
    fn deliver(&mut self, lines: Vec<AlertLine>) -> BoxFuture<'_, Vec<AlertLine>>;

    /// Delivers one group's message (sinks with grouping on); by default
    /// the group's lines one by one, as [`Sink::deliver`] would.
    fn deliver_group(&mut self, group: Group) -> BoxFuture<'_, Vec<AlertLine>> {
        self.deliver(group.lines)
    }

    /// Whether the sink keeps state that [`Sink::sync_firing`] replaces;
    /// the others are never handed the firing set (in a storm it is every
    /// alert, once a second).
    fn follows_firing(&self) -> bool {
        false
    }

    /// The full set of alerts firing now (after a restart or a reload, and
    /// at most once a second while lines go out); only called on a sink
    /// that [`Sink::follows_firing`].
    fn sync_firing(&mut self, firing: Vec<Arc<AlertLine>>) {
        let _ = firing;
    }

    /// When the sink next wants [`Sink::tick`], if ever (re-sends, heartbeats).
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// Periodic work; failures are the sink's to count and log.
    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
