//! # edges: what both binaries do at their edges, written once
//!
//! Durations as humans write them, request rates, token files, URL
//! redaction and (with the `serve` feature) the one accept-and-drain loop
//! of both HTTP servers. Nothing here knows the contract's envelope; that
//! is `shared-schema`'s job. Without `serve` this crate pulls in no runtime,
//! so a pure core may depend on it.

pub mod dur;
pub mod rate;
pub mod redact;
#[cfg(feature = "serve")]
pub mod serve;
pub mod token_file;
#[cfg(feature = "serve")]
pub mod web_config;
