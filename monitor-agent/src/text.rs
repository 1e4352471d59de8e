//! Values that repeat from call to call (methods, hosts, media types, routes): each thread
//! keeps one shared copy of each it meets, so a call carries a pointer to it instead of a
//! fresh string. Allocating and freeing those strings on two threads was a large part of
//! the agent's cost per call.
//!
//! The values come from workloads, so the table is bounded: it is emptied when full
//! (counted as [`Limit::InternedValues`]) and long values are never kept, so a stream of
//! made-up hosts costs allocations, never memory.

use std::{borrow::Borrow, cell::RefCell, fmt, ops::Deref, sync::Arc};

use hashbrown::HashSet;
use serde::{Deserialize, Serialize};

use crate::limits::Limit;

/// Distinct values one thread keeps.
pub const MAX_INTERNED: usize = 8192;
/// Longer values are copied per call: real methods, hosts and media types are shorter.
const MAX_INTERNED_LEN: usize = 128;

/// A string shared between the calls that carry it; compares and prints as its text.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(Arc<str>);

thread_local! {
    static TABLE: RefCell<HashSet<Arc<str>>> = RefCell::new(HashSet::new());
}

impl Text {
    /// This thread's shared copy of `s`, made on first sight.
    pub fn interned(s: &str) -> Text {
        if s.len() > MAX_INTERNED_LEN {
            return Text(Arc::from(s));
        }
        TABLE.with(|t| {
            let Ok(mut table) = t.try_borrow_mut() else {
                return Text(Arc::from(s));
            };
            if let Some(v) = table.get(s) {
                return Text(v.clone());
            }
            if table.len() >= MAX_INTERNED {
                Limit::InternedValues.reached();
                table.clear();
            }
            let v: Arc<str> = Arc::from(s);
            table.insert(v.clone());
            Text(v)
        })
    }

    /// `bytes` as text (invalid UTF-8 replaced), shared like [`Text::interned`].
    pub fn interned_lossy(bytes: &[u8]) -> Text {
        Text::interned(&String::from_utf8_lossy(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the one shared copy (not merely equal text).
    pub fn is_shared_with(&self, other: &Text) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Arc::from(s))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_value_and_a_full_table_starts_over() {
        let a = Text::interned("GET");
        let b = Text::interned("GET");
        assert!(a.is_shared_with(&b));
        assert_eq!(a, "GET");
        let before = Limit::InternedValues.count();
        for i in 0..=MAX_INTERNED {
            Text::interned(&format!("host-{i}"));
        }
        assert!(Limit::InternedValues.count() > before);
        TABLE.with(|t| assert!(t.borrow().len() <= MAX_INTERNED));
        let long = "x".repeat(MAX_INTERNED_LEN + 1);
        let (c, d) = (Text::interned(&long), Text::interned(&long));
        assert!(!c.is_shared_with(&d));
        assert_eq!(c, d);
    }
}
