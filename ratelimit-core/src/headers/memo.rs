//! The `RateLimit-Policy` and `RateLimit` values, remembered per thread.
//!
//! The policy field depends only on the enforced rules — their ids, limits
//! and windows — so nearly every response of a route repeats the previous
//! one's. The `RateLimit` field adds each rule's `r` (what is left) and `t`
//! (seconds until rested), and those repeat too: a caller under its limit
//! finds its counter rested, so every such caller of a route is sent the
//! same `r=LIMIT-1;t=WINDOW`. Formatting one field cost ~440 instructions
//! per response in the HTTP bench, and the adapter's header type then
//! checks every byte of it (~6 per byte).
//!
//! So each thread keeps, per policy (up to [`POLICIES`]), the policy's text
//! and what the adapter made of it, and the last few `RateLimit` values
//! made for it (up to [`STATES`], keyed by their `r` and `t` numbers). A
//! response that repeats one gets a clone of the adapter's value: no
//! formatting and no check. Nothing is shared between threads (no lock, no
//! contended counter), and an entry is a pure function of its key, so a
//! rule changed at run time simply misses and is formatted anew.

use std::any::Any;
use std::cell::RefCell;

use smallvec::SmallVec;

use super::{FieldValue, Item, list};

/// Distinct policies a thread remembers: an app's routes each have one.
/// Past this, the oldest entry is replaced.
const POLICIES: usize = 8;

/// `RateLimit` values remembered per policy. Past this, the oldest is
/// replaced.
const STATES: usize = 8;

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new(Memo::new()) };
}

/// The `RateLimit-Policy` list of `policy` (items `"RULE";q=LIMIT;w=WINDOW`)
/// and the `RateLimit` list of `limit` (items `"RULE";r=LEFT;t=SECONDS`, for
/// the same rules in the same order), as [`list`] formats them and `make`
/// turns each into a header value — or clones of the values `make` made of
/// the same texts before on this thread.
pub(super) fn fields<'a, P: Clone + 'static>(
    policy: impl Iterator<Item = Item<'a>> + Clone,
    limit: impl Iterator<Item = Item<'a>> + Clone,
    make: impl Fn(FieldValue) -> Option<P>,
) -> (Option<P>, Option<P>) {
    let remembered = MEMO.try_with(|memo| {
        // No second borrow (a `make` that asks for fields itself).
        let mut memo = memo.try_borrow_mut().ok()?;
        Some(memo.fields(policy.clone(), limit.clone(), &make))
    });
    match remembered {
        Ok(Some(fields)) => fields,
        // No TLS while the thread shuts down, or the memo in use: format.
        _ => (make_list(policy, &make), make_list(limit, &make)),
    }
}

/// The list of `items`, formatted and made into a header value.
fn make_list<'a, P>(
    items: impl Iterator<Item = Item<'a>> + Clone,
    make: impl Fn(FieldValue) -> Option<P>,
) -> Option<P> {
    list(items).map(FieldValue::from).and_then(make)
}

struct Memo {
    entries: Vec<Entry>,
    /// The entry replaced next once all are taken.
    next: usize,
}

/// One remembered policy: its rules, each with its limit and window, the
/// text they make, and what an adapter made of it.
struct Entry {
    rules: Vec<(Box<str>, u64, u64)>,
    text: FieldValue,
    /// A [`Made<P>`] for the adapter's header type `P`; one type at a time
    /// (a thread serves one framework).
    made: Option<Box<dyn Any>>,
}

/// What an adapter made for one policy: the policy's value and the last
/// few `RateLimit` values.
struct Made<P> {
    policy: P,
    states: Vec<State<P>>,
    /// The state replaced next once all are taken.
    next: usize,
}

/// A `RateLimit` value, keyed by each rule's `r` and `t` in order.
struct State<P> {
    numbers: SmallVec<[(u64, u64); 2]>,
    value: P,
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

impl<P: Clone> Made<P> {
    fn rate_limit<'a>(
        &mut self,
        limit: impl Iterator<Item = Item<'a>> + Clone,
        make: impl Fn(FieldValue) -> Option<P>,
    ) -> Option<P> {
        let seen = self.states.iter().find(|state| {
            let mut items = limit.clone();
            state
                .numbers
                .iter()
                .all(|&(r, t)| items.next().is_some_and(|i| i.a.1 == r && i.b.1 == t))
                && items.next().is_none()
        });
        if let Some(state) = seen {
            return Some(state.value.clone());
        }
        let value = make_list(limit.clone(), make)?;
        let state = State {
            numbers: limit.map(|item| (item.a.1, item.b.1)).collect(),
            value: value.clone(),
        };
        if self.states.len() < STATES {
            self.states.push(state);
        } else if let Some(slot) = self.states.get_mut(self.next) {
            *slot = state;
            self.next = (self.next + 1) % STATES;
        }
        Some(value)
    }
}

impl Memo {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
            next: 0,
        }
    }

    fn fields<'a, P: Clone + 'static>(
        &mut self,
        policy: impl Iterator<Item = Item<'a>> + Clone,
        limit: impl Iterator<Item = Item<'a>> + Clone,
        make: impl Fn(FieldValue) -> Option<P>,
    ) -> (Option<P>, Option<P>) {
        let index = match self.entries.iter().position(|e| e.matches(policy.clone())) {
            Some(index) => index,
            None => match self.insert(policy) {
                Some(index) => index,
                // No enforced rule: neither field is sent.
                None => return (None, None),
            },
        };
        let Some(entry) = self.entries.get_mut(index) else {
            return (None, None);
        };
        let known = entry
            .made
            .as_mut()
            .and_then(|made| made.downcast_mut::<Made<P>>());
        let made = match known {
            Some(made) => made,
            None => {
                let Some(policy) = make(entry.text.clone()) else {
                    // Refused: nothing to remember; try again next time.
                    return (None, make_list(limit, make));
                };
                let fresh: &mut Made<P> = match entry
                    .made
                    .insert(Box::new(Made {
                        policy,
                        states: Vec::new(),
                        next: 0,
                    }))
                    .downcast_mut()
                {
                    Some(fresh) => fresh,
                    None => return (None, None),
                };
                fresh
            }
        };
        (Some(made.policy.clone()), made.rate_limit(limit, make))
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
        if self.entries.len() < POLICIES {
            self.entries.push(entry);
            return Some(self.entries.len() - 1);
        }
        let index = self.next;
        *self.entries.get_mut(index)? = entry;
        self.next = (self.next + 1) % POLICIES;
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rules<'r> = &'r [(&'static str, u64, u64)];

    fn policy(rules: Rules<'_>) -> impl Iterator<Item = Item<'static>> + Clone + '_ {
        rules.iter().map(|&(rule, q, w)| Item {
            rule,
            a: ("\";q=", q),
            b: (";w=", w),
        })
    }

    /// The `RateLimit` items of `rules`' ids with `numbers` as `r` and `t`.
    fn limit<'r>(
        rules: Rules<'r>,
        numbers: &'r [(u64, u64)],
    ) -> impl Iterator<Item = Item<'static>> + Clone + 'r {
        rules
            .iter()
            .zip(numbers)
            .map(|(&(rule, _, _), &(r, t))| Item {
                rule,
                a: ("\";r=", r),
                b: (";t=", t),
            })
    }

    /// Texts, as `values` makes them (no conversion).
    fn texts(memo: &mut Memo, rules: Rules<'_>, numbers: &[(u64, u64)]) -> (String, String) {
        let (policy, limit) = memo.fields(policy(rules), limit(rules, numbers), Some);
        let text = |v: Option<FieldValue>| v.map(|v| v.as_str().to_owned()).unwrap_or_default();
        (text(policy), text(limit))
    }

    #[test]
    fn remembered_fields_read_as_formatted_ones() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1), ("global", 1000, 1)];
        for _ in 0..2 {
            assert_eq!(
                texts(&mut memo, &rules, &[(9, 1), (999, 1)]),
                (
                    "\"default\";q=10;w=1, \"global\";q=1000;w=1".to_owned(),
                    "\"default\";r=9;t=1, \"global\";r=999;t=1".to_owned()
                )
            );
        }
        assert_eq!(memo.entries.len(), 1);
        assert_eq!(texts(&mut memo, &[], &[]), (String::new(), String::new()));
    }

    #[test]
    fn any_difference_in_the_rules_is_a_different_policy() {
        let mut memo = Memo::new();
        texts(
            &mut memo,
            &[("default", 10, 1), ("global", 1000, 1)],
            &[(9, 1), (9, 1)],
        );
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
            let (policy, limit) = texts(&mut memo, rules, &[(9, 1), (9, 1), (9, 1)]);
            assert_eq!(policy, text);
            // The RateLimit value names the same rules.
            let ids: Vec<String> = rules
                .iter()
                .map(|r| format!("\"{}\";r=9;t=1", r.0))
                .collect();
            assert_eq!(limit, ids.join(", "));
        }
    }

    #[test]
    fn any_difference_in_the_numbers_is_a_different_rate_limit() {
        let mut memo = Memo::new();
        let rules = [("a", 10, 1), ("b", 100, 60)];
        for (numbers, text) in [
            ([(9, 1), (99, 60)], "\"a\";r=9;t=1, \"b\";r=99;t=60"),
            ([(8, 1), (99, 60)], "\"a\";r=8;t=1, \"b\";r=99;t=60"),
            ([(9, 2), (99, 60)], "\"a\";r=9;t=2, \"b\";r=99;t=60"),
            ([(9, 1), (98, 60)], "\"a\";r=9;t=1, \"b\";r=98;t=60"),
            ([(9, 1), (99, 59)], "\"a\";r=9;t=1, \"b\";r=99;t=59"),
            ([(9, 1), (99, 60)], "\"a\";r=9;t=1, \"b\";r=99;t=60"),
        ] {
            assert_eq!(texts(&mut memo, &rules, &numbers).1, text);
        }
    }

    #[test]
    fn past_their_size_the_oldest_policies_and_values_are_replaced() {
        let mut memo = Memo::new();
        for q in 0..(POLICIES as u64 + 3) {
            let (policy, _) = texts(&mut memo, &[("r", q, 1)], &[(0, 1)]);
            assert_eq!(policy, format!("\"r\";q={q};w=1"));
        }
        assert_eq!(memo.entries.len(), POLICIES);
        // The three oldest (q = 0, 1, 2) made room for the newest.
        let held: Vec<u64> = memo.entries.iter().map(|e| e.rules[0].1).collect();
        assert!(!held.contains(&0) && !held.contains(&2) && held.contains(&3));
        assert!(held.contains(&(POLICIES as u64 + 2)));

        let mut memo = Memo::new();
        let rules = [("r", 100, 1)];
        for r in 0..(STATES as u64 + 1) {
            assert_eq!(
                texts(&mut memo, &rules, &[(r, 1)]).1,
                format!("\"r\";r={r};t=1")
            );
        }
        let made = memo.entries[0]
            .made
            .as_ref()
            .and_then(|m| m.downcast_ref::<Made<FieldValue>>());
        let held: Vec<u64> = made
            .map(|m| m.states.iter().map(|s| s.numbers[0].0).collect())
            .unwrap_or_default();
        assert_eq!(held.len(), STATES);
        assert!(!held.contains(&0) && held.contains(&1) && held.contains(&(STATES as u64)));
    }

    #[test]
    fn what_an_adapter_made_is_cloned_after_that() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1)];
        let made = std::cell::Cell::new(0);
        let make = |text: FieldValue| {
            made.set(made.get() + 1);
            Some(text.into_bytes())
        };
        for _ in 0..3 {
            let (policy, limit) = memo.fields(policy(&rules), limit(&rules, &[(9, 1)]), make);
            assert_eq!(policy.as_deref(), Some(&b"\"default\";q=10;w=1"[..]));
            assert_eq!(limit.as_deref(), Some(&b"\"default\";r=9;t=1"[..]));
        }
        assert_eq!(made.get(), 2, "the policy once, the RateLimit value once");
        memo.fields(policy(&rules), limit(&rules, &[(8, 1)]), make);
        assert_eq!(made.get(), 3, "a new RateLimit value");
        // Another type is made anew (and then remembered instead).
        let (text, _) = memo.fields(policy(&rules), limit(&rules, &[(9, 1)]), |t| {
            Some(t.as_str().to_owned())
        });
        assert_eq!(text.as_deref(), Some("\"default\";q=10;w=1"));
        assert_eq!(memo.entries.len(), 1);
    }

    #[test]
    fn a_value_the_adapter_refuses_is_not_remembered() {
        let mut memo = Memo::new();
        let rules = [("default", 10, 1)];
        let refused = memo.fields(policy(&rules), limit(&rules, &[(9, 1)]), |_| {
            None::<FieldValue>
        });
        assert_eq!(refused, (None, None));
        let made = std::cell::Cell::new(0);
        let (policy, limit) = memo.fields(policy(&rules), limit(&rules, &[(9, 1)]), |text| {
            made.set(made.get() + 1);
            Some(text)
        });
        assert_eq!(policy.as_deref(), Some("\"default\";q=10;w=1"));
        assert_eq!(limit.as_deref(), Some("\"default\";r=9;t=1"));
        assert_eq!(made.get(), 2);
    }

    #[test]
    fn a_memo_in_use_formats_without_remembering() {
        let rules = [("outer", 1, 1)];
        let (outer, _) = fields(policy(&rules), limit(&rules, &[(0, 1)]), |text| {
            // Asked again while the memo is borrowed: still answered.
            let inner_rules = [("inner", 2, 2)];
            let (inner, _) = fields(policy(&inner_rules), limit(&inner_rules, &[(1, 2)]), Some);
            assert_eq!(inner.as_deref(), Some("\"inner\";q=2;w=2"));
            Some(text)
        });
        assert_eq!(outer.as_deref(), Some("\"outer\";q=1;w=1"));
    }
}
