//! Arbitrary text through the emitter's `/proc` parsers and process-tree sums.
//!
//! `parse_stat` and `parse_io` must never panic; a parsed stat line keeps its
//! fields in range; and a table built from whatever lines parse (cycles in
//! the parent map included: the pass over `/proc` is not atomic) answers
//! every agent without looping, its tree ticks never below its own ticks.
#![no_main]

use std::path::Path;

use emitter::procfs::{parse_io, parse_stat, ProcTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_io(text);
    let stats: Vec<_> = text.lines().filter_map(parse_stat).collect();
    for s in &stats {
        assert!(!s.comm.contains('\n'));
    }
    // A root that does not exist: io reads fail, as for another user's pid.
    let table = ProcTable::from_stats(Path::new("/nonexistent-proc-root"), stats.clone());
    for s in stats.iter().take(64) {
        let a = table.agent(s.pid);
        if let (Some(own), Some(tree)) = (a.cpu_ticks, a.tree_cpu_ticks) {
            assert!(tree >= own, "tree ticks {tree} below own ticks {own}");
        }
        assert!(a.io_rchar.is_none());
        let d = table.descendants(s.pid);
        assert!(!d.contains(&s.pid));
    }
});
