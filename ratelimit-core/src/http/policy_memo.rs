//! The `RateLimit-Policy` value, remembered per thread.
//!
//! The policy field depends only on the enforced rules — their ids, limits
//! and windows — so nearly every response of a route repeats the previous
//! one's. Finding it among the last few seen does less work than formatting
//! it (see `docs/benchmarks.md`). An entry also keeps what the adapter made of the text (its
//! header type, which checks every byte it is given), so each response
//! clones that instead. Each thread keeps its own few entries: nothing is
//! shared between threads (no lock, no contended counter), and an entry is
//! a pure function of its key, so a rule changed at run time simply misses
//! and is formatted anew.

use std::any::Any;
use std::cell::RefCell;

use super::FieldValue;
use super::list::{Item, list};

/// Distinct policies a thread remembers: an app's routes each have one.
/// Past this, the oldest entry is replaced.
const ENTRIES: usize = 8;

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new(Memo::new()) };
}

/// The policy list of `items` (each `"RULE";q=LIMIT;w=WINDOW`), as
/// [`list`] formats it and `make` turns it into a header value — or a
/// clone of the value `make` made of the same policy before on this
/// thread.
pub(super) fn policy<'a, P: Clone + 'static>(
    items: impl Iterator<Item = Item<'a>> + Clone,
    make: impl FnOnce(FieldValue) -> Option<P>,
) -> Option<P> {
    // Held outside the closure so that whichever way it goes, `make` is
    // called at most once.
    let mut make = Some(make);
    let remembered = MEMO.try_with(|memo| {
        // No second borrow (a `make` that asks for a policy itself).
        let mut memo = memo.try_borrow_mut().ok()?;
        Some(memo.policy(items.clone(), make.take()?))
    });
    match (remembered, make) {
        (Ok(Some(made)), _) => made,
        // No TLS while the thread shuts down, or the memo in use: format.
        (_, Some(make)) => list(items).map(FieldValue::from).and_then(make),
        (_, None) => None,
    }
}

struct Memo {
    entries: Vec<Entry>,
    /// The entry replaced next once all are taken.
    next: usize,
}

/// One remembered policy: its rules, each with its limit and window, the
/// text they make, and what an adapter made of the text.
struct Entry {
    rules: Vec<(Box<str>, u64, u64)>,
    text: FieldValue,
    /// The adapter's header value (one type at a time: a thread serves one
    /// framework), cloned for each response instead of made again — which
    /// would check every byte of the text.
    made: Option<Box<dyn Any>>,
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

    fn policy<'a, P: Clone + 'static>(
        &mut self,
        items: impl Iterator<Item = Item<'a>> + Clone,
        make: impl FnOnce(FieldValue) -> Option<P>,
    ) -> Option<P> {
        let index = match self.entries.iter().position(|e| e.matches(items.clone())) {
            Some(index) => index,
            None => self.insert(items)?,
        };
        let entry = self.entries.get_mut(index)?;
        if let Some(made) = entry.made.as_ref().and_then(|m| m.downcast_ref::<P>()) {
            return Some(made.clone());
        }
        let made = make(entry.text.clone())?;
        entry.made = Some(Box::new(made.clone()));
        Some(made)
    }

    /// Formats the policy of `items` into a new entry (replacing the oldest
    /// when all are taken) and returns its index; `None` for no items.
    fn insert<'a>(&mut self, items: impl Iterator<Item = Item<'a>> + Clone) -> Option<usize> {
        let text = FieldValue::from(list(items.clone())?);
        let entry = Entry {
            rules: items
                .map(|item| (Box::from(item.rule), item.a.1, item.b.1))
                .collect(),
            text,
            made: None,
        };
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
            return Some(self.entries.len() - 1);
        }
        let index = self.next;
        *self.entries.get_mut(index)? = entry;
        self.next = (self.next + 1) % ENTRIES;
        Some(index)
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
        let first = memo.policy(items(&rules), Some);
        assert_eq!(
            first.as_deref(),
            Some("\"default\";q=10;w=1, \"global\";q=1000;w=1")
        );
        assert_eq!(memo.policy(items(&rules), Some), first);
        assert_eq!(memo.entries.len(), 1);
        assert_eq!(memo.policy(items(&[]), Some), None);
    }

    #[test]
    fn any_difference_in_the_rules_is_a_different_policy() {
        let mut memo = Memo::new();
        let base = [("default", 10, 1), ("global", 1000, 1)];
        memo.policy(items(&base), Some);
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
            assert_eq!(memo.policy(items(rules), Some).as_deref(), Some(text));
        }
    }

    #[test]
    fn past_its_size_the_oldest_entries_are_replaced() {
        let mut memo = Memo::new();
        for q in 0..(ENTRIES as u64 + 3) {
            let text = memo.policy(items(&[("r", q, 1)]), Some);
            assert_eq!(text.as_deref(), Some(format!("\"r\";q={q};w=1").as_str()));
        }
        assert_eq!(memo.entries.len(), ENTRIES);
        // The three oldest (q = 0, 1, 2) made room for the newest.
        let held: Vec<u64> = memo.entries.iter().map(|e| e.rules[0].1).collect();
        assert!(!held.contains(&0) && !held.contains(&2) && held.contains(&3));
        assert!(held.contains(&(ENTRIES as u64 + 2)));
    }

    #[test]
    fn what_an_adapter_made_of_a_policy_is_cloned_after_that() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1)];
        let mut made = 0;
        for _ in 0..3 {
            let value = memo.policy(items(&rules), |text| {
                made += 1;
                Some(text.into_bytes())
            });
            assert_eq!(value.as_deref(), Some(&b"\"default\";q=10;w=1"[..]));
        }
        assert_eq!(made, 1);
        // Another type is made anew (and then remembered instead).
        let text = memo.policy(items(&rules), |text| Some(text.as_str().to_owned()));
        assert_eq!(text.as_deref(), Some("\"default\";q=10;w=1"));
        assert_eq!(memo.entries.len(), 1);
    }

    #[test]
    fn a_value_the_adapter_refuses_is_not_remembered() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1)];
        assert_eq!(memo.policy(items(&rules), |_| None::<FieldValue>), None);
        let mut made = 0;
        let value = memo.policy(items(&rules), |text| {
            made += 1;
            Some(text)
        });
        assert_eq!(value.as_deref(), Some("\"default\";q=10;w=1"));
        assert_eq!(made, 1);
    }

    #[test]
    fn a_memo_in_use_formats_without_remembering() {
        let outer = policy(items(&[("outer", 1, 1)]), |text| {
            // Asked again while the memo is borrowed: still answered.
            let inner = policy(items(&[("inner", 2, 2)]), Some);
            assert_eq!(inner.as_deref(), Some("\"inner\";q=2;w=2"));
            Some(text)
        });
        assert_eq!(outer.as_deref(), Some("\"outer\";q=1;w=1"));
    }
}
