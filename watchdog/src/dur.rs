//! Durations come from the shared edge crate: one `Dur` for every binary.
pub use edges::dur::*;
