//! An alert's identifying labels (`labels` of CONTRACT.md section 3).
//!
//! A rule makes them once; after that every holder of the alert (the
//! engine, the status page, each sink's firing set, the outbox, a batch on
//! its way to a sink) holds the same set, not a copy of it. In an incident
//! storm of 10,000 alerts the label maps were the largest part of what each
//! copy of an alert cost (issue 22: a `BTreeMap` node and ten small strings,
//! about 0.9 KiB), copied four times over.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Label name -> value, shared: cloning is a reference count. One
/// allocation of the names and values, sorted by name, plus one per string
/// (a `BTreeMap` was a 544-byte node for up to eleven, about 900 bytes
/// for an agent's five labels; this is about 400). No labels: no
/// allocation. On the wire it is a plain JSON object; it hashes and
/// orders as the map it replaced.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Option<Arc<[Pair]>>);

/// One label: its name and value.
type Pair = (Box<str>, Box<str>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    fn pairs(&self) -> &[Pair] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let pairs = self.pairs();
        let at = pairs.binary_search_by(|(k, _)| (**k).cmp(name)).ok()?;
        Some(&pairs[at].1)
    }

    /// Whether label `name` is set.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The labels, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs().iter().map(|(k, v)| (&**k, &**v))
    }

    /// The names, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }

    /// These labels with `name` set to `value` (a new set: holders of this
    /// one keep theirs).
    pub fn with(&self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut map = self.to_map();
        map.insert(name.into(), value.into());
        map.into()
    }

    /// A copy as a map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Whether both are the one shared set (not merely equal).
    pub fn shares(&self, other: &Labels) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// `other` when it holds the same labels, so the two share one set and
    /// this copy can go (a rule remakes an alert's labels on every poll).
    pub fn dedup_with(self, other: &Labels) -> Labels {
        if self.shares(other) || self == *other {
            other.clone()
        } else {
            self
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `BTreeMap<String, String>` hashes: its length, then each pair.
        state.write_usize(self.len());
        for pair in self.iter() {
            pair.hash(state);
        }
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // As the map's: pair by pair, in name order.
        self.iter().cmp(other.iter())
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            return Self(None);
        }
        // Sorted and unique already: the map's order.
        Self(Some(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        ))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        // Through a map: sorted by name, and of two values of one name the
        // later wins, as before.
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<_, _>>()
            .into()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Pair>, fn(&'a Pair) -> (&'a str, &'a str)>;
    fn into_iter(self) -> Self::IntoIter {
        fn pair(p: &Pair) -> (&str, &str) {
            (&p.0, &p.1)
        }
        self.pairs().iter().map(pair)
    }
}

impl PartialEq<BTreeMap<String, String>> for Labels {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other)
                .all(|((a, b), (c, d))| a == c && b == d)
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_and_a_change_copies_only_the_changed_one() {
        let a: Labels = [("job_id", "7")].into_iter().collect();
        let mut b = a.clone();
        assert!(a.shares(&b));
        b = b.with("pid", "42");
        assert!(!a.shares(&b));
        assert_eq!(a.len(), 1);
        assert_eq!(b.get("pid"), Some("42"));
        assert_eq!(b.get("job_id"), Some("7"));
        assert_eq!(b.get("nope"), None);
    }

    #[test]
    fn equal_labels_are_folded_into_the_older_map() {
        let old: Labels = [("job_id", "7")].into_iter().collect();
        let same: Labels = [("job_id", "7")].into_iter().collect();
        let other: Labels = [("job_id", "8")].into_iter().collect();
        assert!(same.dedup_with(&old).shares(&old));
        assert!(!other.dedup_with(&old).shares(&old));
    }

    #[test]
    fn it_hashes_orders_and_compares_as_the_map_it_replaced() {
        use std::collections::hash_map::DefaultHasher;
        fn hash<T: Hash>(t: &T) -> u64 {
            let mut h = DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        }
        let maps: Vec<BTreeMap<String, String>> = [
            vec![],
            vec![("job_id", "7")],
            vec![("job_id", "7"), ("pid", "42")],
            vec![("job_id", "70")],
            vec![("agent", "dev"), ("job_id", "7")],
        ]
        .into_iter()
        .map(|v| {
            v.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
        for a in &maps {
            let la = Labels::from(a.clone());
            assert_eq!(hash(&la), hash(a), "{a:?}");
            assert_eq!(la, *a);
            assert_eq!(la.to_map(), *a);
            for b in &maps {
                assert_eq!(la.cmp(&Labels::from(b.clone())), a.cmp(b), "{a:?} {b:?}");
            }
        }
        // Of two values of one name, the later, as a map's insert.
        let l: Labels = [("a", "1"), ("a", "2")].into_iter().collect();
        assert_eq!(l.get("a"), Some("2"));
        assert_eq!(l.len(), 1);
        assert!(Labels::new().shares(&Labels::default()));
    }

    #[test]
    fn on_the_wire_it_is_a_plain_object() {
        let l: Labels = [("b", "2"), ("a", "1")].into_iter().collect();
        let json = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        let back: Labels = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, l);
    }
}
