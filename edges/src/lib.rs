//! # edges: what both binaries do at their edges, written once
//!
//! Durations as humans write them, request rates, token files, URL
//! redaction and (with the `serve` feature) the one accept-and-drain loop
//! of both HTTP servers. Nothing here knows the contract's envelope; that
//! is `shared-schema`'s job.

pub mod dur;
pub mod rate;
pub mod redact;
pub mod token_file;
