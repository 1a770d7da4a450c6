//! The watchdog's own clock at the receipt of a poll, as data for the core
//! ([`Receipt`]): `CLOCK_MONOTONIC` (immune to wall-clock steps, and it
//! keeps counting across a restart of the watchdog on the same boot, so a
//! receipt saved in the state file compares with the next), and a hash of
//! the host's `boot_id` to tell the runs of that clock apart.

use std::sync::OnceLock;

use shared_schema::Timestamp;
use watchdog_core::delta::Receipt;

/// The epoch of receipts made from a record's `received_at` (`replay`).
pub const RECORDED_EPOCH: u64 = 0;

/// Now, on the watchdog's monotonic clock; `None` when it cannot be read.
pub fn now() -> Option<Receipt> {
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
    let ms = secs.checked_mul(1000)?.checked_add(nanos / 1_000_000)?;
    Some(Receipt { epoch: epoch(), ms })
}

/// A receipt from a record's `received_at` (the watchdog's wall clock when
/// it was recorded), so `replay` judges the same way, deterministically.
pub fn recorded(received_at: Timestamp) -> Option<Receipt> {
    let ms = u64::try_from(received_at.unix_ms()).ok()?;
    Some(Receipt {
        epoch: RECORDED_EPOCH,
        ms,
    })
}

/// This boot's epoch: FNV-1a of `boot_id` (never [`RECORDED_EPOCH`]), or 1
/// when it cannot be read (a reboot then looks like a clock that went back,
/// which is never compared).
fn epoch() -> u64 {
    static EPOCH: OnceLock<u64> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let id = id.trim();
        if id.is_empty() {
            return 1;
        }
        let h = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        h.max(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_advance_and_keep_their_epoch() {
        let a = now().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now().unwrap();
        assert_eq!(a.epoch, b.epoch);
        assert_ne!(a.epoch, RECORDED_EPOCH);
        assert!(b.ms >= a.ms + 20, "{a:?} {b:?}");
        let t = Timestamp::parse("2026-11-22T10:00:00Z").unwrap();
        assert_eq!(
            recorded(t.plus_seconds(1.5)).unwrap().ms - recorded(t).unwrap().ms,
            1500
        );
    }
}
