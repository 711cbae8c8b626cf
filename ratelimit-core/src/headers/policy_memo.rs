//! The `RateLimit-Policy` value, remembered per thread.
//!
//! The policy field depends only on the enforced rules — their ids, limits
//! and windows — so nearly every response of a route repeats the previous
//! one's. Formatting it cost ~440 instructions per response (the HTTP
//! bench, one rule); finding it among the last few seen costs a fraction
//! of that, and handing it out shares its buffer (a [`FieldValue`]). Each thread keeps its own few entries: nothing is
//! shared between threads (no lock, no contended counter), and an entry is
//! a pure function of its key, so a rule changed at run time simply misses
//! and is formatted anew.

use std::cell::RefCell;

use super::{FieldValue, Item, list};

/// Distinct policies a thread remembers: an app's routes each have one.
/// Past this, the oldest entry is replaced.
const ENTRIES: usize = 8;

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new(Memo::new()) };
}

/// The policy list of `items` (each `"RULE";q=LIMIT;w=WINDOW`), as
/// [`list`] formats it.
pub(super) fn policy<'a>(items: impl Iterator<Item = Item<'a>> + Clone) -> Option<FieldValue> {
    // No TLS while the thread shuts down, and no second borrow: format.
    MEMO.try_with(|memo| {
        let mut memo = memo.try_borrow_mut().ok()?;
        Some(memo.policy(items.clone()))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| list(items).map(FieldValue::from))
}

struct Memo {
    entries: Vec<Entry>,
    /// The entry replaced next once all are taken.
    next: usize,
}

/// One remembered policy: its rules, each with its limit and window, and
/// the text they make.
struct Entry {
    rules: Vec<(Box<str>, u64, u64)>,
    text: FieldValue,
}

impl Entry {
    fn matches<'a>(&self, mut items: impl Iterator<Item = Item<'a>>) -> bool {
        self.rules.iter().all(|(rule, limit, window)| {
            items.next().is_some_and(|item| {
                item.a.1 == *limit && item.b.1 == *window && item.rule == &**rule
            })
        }) && items.next().is_none()
    }
}

impl Memo {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next: 0,
        }
    }

    fn policy<'a>(&mut self, items: impl Iterator<Item = Item<'a>> + Clone) -> Option<FieldValue> {
        if let Some(entry) = self.entries.iter().find(|e| e.matches(items.clone())) {
            return Some(entry.text.clone());
        }
        let text = FieldValue::from(list(items.clone())?);
        let entry = Entry {
            rules: items
                .map(|item| (Box::from(item.rule), item.a.1, item.b.1))
                .collect(),
            text: text.clone(),
        };
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
        } else if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = entry;
            self.next = (self.next + 1) % ENTRIES;
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(rules: &[(&'static str, u64, u64)]) -> impl Iterator<Item = Item<'static>> + Clone {
        rules.iter().copied().map(|(rule, q, w)| Item {
            rule,
            a: ("\";q=", q),
            b: (";w=", w),
        })
    }

    #[test]
    fn a_remembered_policy_reads_as_a_formatted_one() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1), ("global", 1000, 1)];
        let first = memo.policy(items(&rules));
        assert_eq!(
            first.as_deref(),
            Some("\"default\";q=10;w=1, \"global\";q=1000;w=1")
        );
        assert_eq!(memo.policy(items(&rules)), first);
        assert_eq!(memo.entries.len(), 1);
        assert_eq!(memo.policy(items(&[])), None);
    }

    #[test]
    fn any_difference_in_the_rules_is_a_different_policy() {
        let mut memo = Memo::new();
        let base = [("default", 10, 1), ("global", 1000, 1)];
        memo.policy(items(&base));
        for (rules, text) in [
            (
                &[("default", 11, 1), ("global", 1000, 1)][..],
                "\"default\";q=11;w=1, \"global\";q=1000;w=1",
            ),
            (
                &[("default", 10, 2), ("global", 1000, 1)][..],
                "\"default\";q=10;w=2, \"global\";q=1000;w=1",
            ),
            (
                &[("defaulT", 10, 1), ("global", 1000, 1)][..],
                "\"defaulT\";q=10;w=1, \"global\";q=1000;w=1",
            ),
            (&[("default", 10, 1)][..], "\"default\";q=10;w=1"),
            (
                &[("default", 10, 1), ("global", 1000, 1), ("x", 1, 1)][..],
                "\"default\";q=10;w=1, \"global\";q=1000;w=1, \"x\";q=1;w=1",
            ),
        ] {
            assert_eq!(memo.policy(items(rules)).as_deref(), Some(text));
        }
    }

    #[test]
    fn past_its_size_the_oldest_entries_are_replaced() {
        let mut memo = Memo::new();
        for q in 0..(ENTRIES as u64 + 3) {
            let text = memo.policy(items(&[("r", q, 1)]));
            assert_eq!(text.as_deref(), Some(format!("\"r\";q={q};w=1").as_str()));
        }
        assert_eq!(memo.entries.len(), ENTRIES);
        // The three oldest (q = 0, 1, 2) made room for the newest.
        let held: Vec<u64> = memo.entries.iter().map(|e| e.rules[0].1).collect();
        assert!(!held.contains(&0) && !held.contains(&2) && held.contains(&3));
        assert!(held.contains(&(ENTRIES as u64 + 2)));
    }
}
