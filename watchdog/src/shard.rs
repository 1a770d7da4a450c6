//! `shard = "i/n"`: several watchdogs split one fleet without overlap.
//!
//! A target belongs to shard `md5(name)[8..16] as big-endian u64 % n`,
//! exactly Prometheus' `hashmod` relabel action on one label, so an
//! operator can predict (and reproduce with Prometheus' own relabelling)
//! which watchdog watches which target. Two replicas of one shard (the HA
//! recipe in DEPLOYMENT.md) watch the same targets.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One shard of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This watchdog's shard, `0..count`.
    pub index: u64,
    /// How many shards the fleet is split into.
    pub count: u64,
}

impl Shard {
    /// Whether the target called `name` is this shard's.
    pub fn owns(&self, name: &str) -> bool {
        hashmod(name, self.count) == self.index
    }
}

/// Prometheus' `hashmod`: the low 8 bytes of the MD5 of `value`, big-endian, mod `modulus`.
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let sum = Md5::digest(value.as_bytes());
    let mut low = [0u8; 8];
    low.copy_from_slice(&sum[8..16]);
    u64::from_be_bytes(low) % modulus.max(1)
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not a shard: write \"i/n\" with 0 <= i < n, e.g. \"0/3\"");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("orch-1") = 1f0a6f0b2e4e5a1a... : the value Prometheus'
        // relabel `hashmod` gives is the low 8 bytes mod n; checked
        // against the digest computed independently below.
        let sum = Md5::digest(b"orch-1");
        let low = u64::from_be_bytes(sum[8..16].try_into().unwrap());
        assert_eq!(hashmod("orch-1", 7), low % 7);
        assert_eq!(
            format!("{:x}", Md5::digest(b"")),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(hashmod("", 1000), 0x_e980_0998_ecf8_427e % 1000);
    }

    #[test]
    fn three_shards_split_a_fleet_exactly_once() {
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        let mut per = [0usize; 3];
        for t in 0..3000 {
            let name = format!("orch-{t}");
            let owners: Vec<usize> = (0..3).filter(|&i| shards[i].owns(&name)).collect();
            assert_eq!(owners.len(), 1, "{name}: {owners:?}");
            per[owners[0]] += 1;
        }
        assert!(
            per.iter().all(|&n| (850..1150).contains(&n)),
            "even enough: {per:?}"
        );
    }

    #[test]
    fn bad_shards_say_how_to_write_one() {
        for bad in ["3/3", "1/0", "x/2", "1", "-1/2", ""] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.contains("\"i/n\""), "{bad}: {err}");
        }
        assert_eq!(" 2 / 5 ".parse::<Shard>().unwrap().to_string(), "2/5");
    }
}
