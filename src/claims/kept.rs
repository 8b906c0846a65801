//! The claims an identity keeps, compactly.
//!
//! A worker remembers up to `token_cache_entries` identities, each with the claims its
//! configuration reads ([`crate::verified::project`]), and the introspection answers it reuses.
//! As a `serde_json::Map` (a B-tree) a handful of claims cost ~620 bytes of wasm32 memory: a
//! leaf of eleven slots however few the members, and one allocation per name. [`Claims`] keeps
//! the names in one string and the members in one slice, sorted by name: the same lookups
//! (a binary search over a few names), about half the memory. Claims are checked on the
//! token's whole `Map` before they are kept; [`Members`] lets the lookups read either.

use crate::json::Object;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Claims by top-level name: a token's whole payload (`Map`) or what an identity keeps
/// ([`Claims`]). Nested members are `Value::Object`s either way.
pub trait Members {
    fn member(&self, name: &str) -> Option<&Value>;
}

impl Members for Map<String, Value> {
    fn member(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl Members for Claims {
    fn member(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// A set of claims, immutable once made.
#[derive(Clone, Default, PartialEq)]
pub struct Claims {
    /// Every member's name, one after another, in name order.
    names: Box<str>,
    /// Each member: where its name ends in `names`, and its value.
    members: Box<[(u32, Value)]>,
}

impl Claims {
    pub fn get(&self, name: &str) -> Option<&Value> {
        let (mut low, mut high) = (0, self.members.len());
        while low < high {
            let middle = low + (high - low) / 2;
            match self.name_at(middle).cmp(name) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return self.members.get(middle).map(|(_, value)| value),
            }
        }
        None
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, (_, value))| (self.name_at(i), value))
    }

    /// The claims as a JSON object again.
    pub fn to_map(&self) -> Map<String, Value> {
        // Inserted one by one: collecting would sort them again (and link a sort into the module).
        let mut map = Map::new();
        for (name, value) in self.iter() {
            map.insert(name.to_string(), value.clone());
        }
        map
    }

    /// Claims from members given in name order, each name once (as a `Map` iterates): the
    /// order [`Claims::get`] searches.
    pub(crate) fn from_ordered(members: impl IntoIterator<Item = (String, Value)>) -> Claims {
        let members = members.into_iter();
        let mut names = String::new();
        // Exact for a whole `Map` (its length is known), so the slice is not reallocated.
        let mut kept = Vec::with_capacity(members.size_hint().0);
        for (name, value) in members {
            names.push_str(&name);
            // A name longer than 4 GiB cannot come out of a bounded token.
            let end = u32::try_from(names.len()).unwrap_or(u32::MAX);
            kept.push((end, value));
        }
        Claims {
            names: names.into_boxed_str(),
            members: kept.into_boxed_slice(),
        }
    }

    /// The memory these claims hold, estimated for wasm32: the names and strings at their
    /// length, 32 bytes for each value, and a B-tree leaf for each nested object.
    pub fn weight(&self) -> usize {
        let members: usize = self.members.iter().map(|(_, v)| 4 + value_weight(v)).sum();
        self.names.len() + members
    }

    fn name_at(&self, i: usize) -> &str {
        let end = |i: usize| self.members.get(i).map_or(0, |(end, _)| *end as usize);
        let start = i.checked_sub(1).map_or(0, end);
        self.names.get(start..end(i)).unwrap_or_default()
    }
}

/// A `Value` in wasm32 (24 bytes), with the allocation header of what it points to.
const VALUE_BYTES: usize = 32;

/// A `Map`'s B-tree leaf in wasm32: eleven slots of a name and a value.
const LEAF_BYTES: usize = 11 * (12 + 24) + 16;

fn value_weight(value: &Value) -> usize {
    VALUE_BYTES
        + match value {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_weight).sum(),
            Value::Object(members) => members.iter().fold(LEAF_BYTES, |sum, (name, v)| {
                sum + name.len() + value_weight(v)
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Claims {
        Claims::from_ordered(map)
    }
}

impl Claims {
    /// The members into an object being written, in name order.
    pub fn write_members(&self, object: &mut Object) {
        for (name, value) in self.iter() {
            object.value(name, value);
        }
    }

    /// The claims as a JSON object's text, as serde_json writes a `Map` of them.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        let mut object = Object::new(&mut out);
        self.write_members(&mut object);
        object.end();
        out
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn every_member_is_found_by_its_name_and_nothing_else_is() {
        let whole = map(json!({
            "sub": "alice", "iss": "https://idp", "exp": 1_700_000_000, "a": 1, "ab": 2,
            "realm_access": {"roles": ["admin"]}, "": "empty name", "scope": "a b"
        }));
        let kept = Claims::from(whole.clone());
        assert_eq!(kept.len(), whole.len());
        for (name, value) in &whole {
            assert_eq!(kept.get(name), Some(value), "{name}");
        }
        for absent in ["su", "subs", "b", "abc", "realm_access.roles", "zzz"] {
            assert_eq!(kept.get(absent), None, "{absent}");
        }
        assert_eq!(kept.to_map(), whole);
        assert_eq!(kept.to_json(), Value::Object(whole).to_string());
    }

    #[test]
    fn claims_weigh_what_they_hold() {
        let small = Claims::from(map(json!({"sub": "alice"})));
        assert_eq!(
            small.weight(),
            "sub".len() + 4 + VALUE_BYTES + "alice".len()
        );
        let groups: Vec<String> = (0..100).map(|i| format!("group-{i:04}")).collect();
        let big = Claims::from(map(json!({"sub": "alice", "groups": groups})));
        assert!(big.weight() > small.weight() + 100 * (VALUE_BYTES + 10));
        let nested = Claims::from(map(json!({"sub": "alice", "realm": {"roles": []}})));
        assert!(nested.weight() > small.weight() + LEAF_BYTES);
        assert_eq!(Claims::default().weight(), 0);
    }

    #[test]
    fn no_claims_find_nothing() {
        let kept = Claims::from(Map::new());
        assert!(kept.is_empty());
        assert_eq!(kept.get(""), None);
        assert_eq!(kept.to_json(), "{}");
        assert_eq!(format!("{kept:?}"), "{}");
    }

    proptest! {
        #[test]
        fn lookups_agree_with_the_map(
            names in proptest::collection::btree_set("[a-z_.]{0,6}", 0..12),
            probes in proptest::collection::vec("[a-z_.]{0,6}", 0..12),
        ) {
            let whole: Map<String, Value> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), json!(i)))
                .collect();
            let kept = Claims::from(whole.clone());
            for name in names.iter().chain(&probes) {
                prop_assert_eq!(kept.member(name), whole.member(name));
            }
            prop_assert_eq!(kept.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(),
                whole.keys().cloned().collect::<Vec<_>>());
            prop_assert_eq!(kept.to_json(), serde_json::to_string(&whole).unwrap());
        }
    }
}
