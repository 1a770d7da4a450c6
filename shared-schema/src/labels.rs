//! An alert's identifying labels (`labels` of CONTRACT.md section 3).
//!
//! A rule makes them once; after that every holder of the alert (the
//! engine, the status page, each sink's firing set, the outbox, a batch on
//! its way to a sink) holds the same map, not a copy of it. In an incident
//! storm of 10,000 alerts the label maps were the largest part of what each
//! copy of an alert cost (issue 22: a `BTreeMap` node and ten small strings,
//! about 0.9 KiB), copied four times over.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Label name -> value, shared: cloning is a reference count, and a change
/// ([`Labels::make_mut`]) copies only when the map is shared. On the wire it
/// is a plain JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Arc<BTreeMap<String, String>>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// The map to change, copied first if another holder shares it.
    pub fn make_mut(&mut self) -> &mut BTreeMap<String, String> {
        Arc::make_mut(&mut self.0)
    }

    /// Whether both are the one shared map (not merely equal).
    pub fn shares(&self, other: &Labels) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `other` when it holds the same labels, so the two share one map and
    /// this copy can go (a rule remakes an alert's labels on every poll).
    pub fn dedup_with(self, other: &Labels) -> Labels {
        if self.shares(other) || *self.0 == *other.0 {
            other.clone()
        } else {
            self
        }
    }
}

impl Deref for Labels {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(Arc::new(map))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<_, _>>()
            .into()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<BTreeMap<String, String>> for Labels {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        *self.0 == *other
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
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
        b.make_mut().insert("pid".into(), "42".into());
        assert!(!a.shares(&b));
        assert_eq!(a.len(), 1);
        assert_eq!(b.get("pid").map(String::as_str), Some("42"));
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
    fn on_the_wire_it_is_a_plain_object() {
        let l: Labels = [("b", "2"), ("a", "1")].into_iter().collect();
        let json = serde_json::to_string(&l).unwrap_or_default();
        assert_eq!(json, r#"{"a":"1","b":"2"}"#);
        let back: Labels = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, l);
    }
}
