//! The envelope's sections, one module each, named after their JSON key.
//!
//! Each module holds both halves of its section: `collect`, which asks a
//! [`Session`](crate::Session) for it and turns a failure into the safe
//! default plus a `degraded` entry, and `read`, the SQLite query behind the
//! default source. Adding a section is one new file plus one line in
//! [`crate::snapshot`].

pub mod agents;
pub mod cost;
pub mod errors;
pub mod queue;
pub mod reconciler;
pub mod stages;

use shared_schema::Envelope;

use crate::SectionError;

/// Names `section` in `degraded` and logs the cause once.
fn degrade(env: &mut Envelope, section: &'static str, err: &SectionError) {
    tracing::warn!(section, error = %err, "section degraded");
    env.mark_degraded(section);
}
