//! The emitter's clocks and host identity, taken together for one snapshot.
//!
//! A reader derives CPU fractions from two snapshots, so it needs the wall
//! clock, the monotonic clock (immune to wall-clock steps), the boot id (a
//! change means every counter restarted) and the tick rate, all describing
//! the same instant. [`Clock::now`] reads them side by side.

use std::path::Path;

use shared_schema::Timestamp;

/// The header facts of one envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    /// UTC wall clock.
    pub generated_at: Timestamp,
    /// `CLOCK_MONOTONIC` in ms; `None` if the call failed.
    pub monotonic_ms: Option<u64>,
    /// `<proc>/sys/kernel/random/boot_id`, trimmed.
    pub boot_id: Option<String>,
    /// The host name.
    pub host: Option<String>,
    /// `sysconf(_SC_CLK_TCK)`.
    pub clk_tck: Option<u64>,
}

impl Clock {
    /// Reads every clock now; `proc_root` is normally `/proc`.
    pub fn now(proc_root: &Path) -> Self {
        // The two clocks first and back to back: they must name one instant.
        let generated_at = Timestamp::now();
        let monotonic_ms = monotonic_ms();
        Self {
            generated_at,
            monotonic_ms,
            boot_id: boot_id(proc_root),
            host: host_name(),
            clk_tck: clk_tck(),
        }
    }
}

/// `CLOCK_MONOTONIC` in milliseconds.
pub fn monotonic_ms() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1000)?.checked_add(nanos / 1_000_000)
}

fn boot_id(proc_root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/random/boot_id")).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

fn clk_tck() -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_host() {
        let c = Clock::now(Path::new("/proc"));
        assert!(c.monotonic_ms.is_some_and(|m| m > 0));
        assert_eq!(c.clk_tck, Some(100), "Linux user-space tick rate");
        let boot = c.boot_id.expect("boot id on Linux");
        assert_eq!(boot.len(), 36, "uuid form: {boot}");
        assert!(c.host.is_some());
    }

    #[test]
    fn monotonic_never_goes_back() {
        let a = monotonic_ms().expect("clock");
        let b = monotonic_ms().expect("clock");
        assert!(b >= a);
    }

    #[test]
    fn a_missing_boot_id_is_unknown() {
        assert_eq!(boot_id(Path::new("/nonexistent")), None);
    }
}
