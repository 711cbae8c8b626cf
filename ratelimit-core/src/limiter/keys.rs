//! [`Keys`]: the storage keys of one check, in one buffer on the check's
//! stack.

use smallvec::SmallVec;

use crate::KeyPrefix;
use crate::key::KeyBytes;
use crate::rule_set::Selected;

/// Key bytes kept inline. A typical check's keys fit (one or two rules, an
/// address or a short id: about 25 bytes a key), so it allocates nothing;
/// longer keys spill to the heap.
const INLINE: usize = 96;

/// The storage keys of one check, in the order of its rules.
///
/// Built where the check runs and only borrowed from then on: moving it
/// would copy the whole inline buffer.
pub(super) struct Keys {
    bytes: Bytes,
    /// Where each key ends in `bytes` (the next one starts there).
    ends: SmallVec<[usize; 2]>,
}

impl Keys {
    /// The keys of `selected`'s counters under `prefix`.
    #[inline]
    pub(super) fn new(prefix: &KeyPrefix, selected: &Selected<'_, '_>) -> Self {
        let mut keys = Self {
            bytes: Bytes {
                inline: [0; INLINE],
                len: 0,
                spilled: Vec::new(),
            },
            ends: SmallVec::new(),
        };
        for (rule, subject) in selected {
            prefix.write_key_to(rule.id(), *subject, &mut keys.bytes);
            keys.ends.push(keys.bytes.len());
        }
        keys
    }

    /// Every key, in order.
    #[inline]
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let bytes = self.bytes.as_slice();
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let key = bytes.get(start..end).unwrap_or_default();
            start = end;
            key
        })
    }
}

/// Bytes written inline until they no longer fit, then to the heap.
///
/// Not a `SmallVec<[u8; N]>`: its `extend_from_slice` is a general insert
/// that costs more than the rest of the key (a key is written in five or
/// six pieces).
struct Bytes {
    inline: [u8; INLINE],
    /// How many bytes of `inline` are written (while nothing spilled).
    len: usize,
    /// Every byte, once they stopped fitting inline.
    spilled: Vec<u8>,
}

impl Bytes {
    fn len(&self) -> usize {
        if self.spilled.is_empty() {
            self.len
        } else {
            self.spilled.len()
        }
    }

    fn as_slice(&self) -> &[u8] {
        if self.spilled.is_empty() {
            self.inline.get(..self.len).unwrap_or_default()
        } else {
            &self.spilled
        }
    }

    /// Appends on the heap, moving what was written inline there first.
    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty() {
            let written = self.inline.get(..self.len).unwrap_or_default();
            self.spilled.reserve(2 * INLINE + bytes.len());
            self.spilled.extend_from_slice(written);
        }
        self.spilled.extend_from_slice(bytes);
    }
}

// Inlined: a key is written in five or six small pieces, each less work
// than a call.
impl KeyBytes for Bytes {
    #[inline]
    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.spilled.is_empty()
            && let Some(free) = self.inline.get_mut(self.len..self.len + bytes.len())
        {
            free.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spill(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Quota, Rule, RuleSet, Target};

    #[test]
    fn one_key_per_rule_in_order_long_ones_included() {
        let quota = Quota::per_second(1).unwrap();
        let long = "l".repeat(64);
        let set = RuleSet::new()
            .with_rule(Rule::new("all", Target::Global, quota).unwrap())
            .with_rule(Rule::new(long.as_str(), Target::Each, quota).unwrap());
        let user = "u".repeat(40);
        let identity = Identity::user(&user);
        let selected = set.applicable(&identity);
        let keys = Keys::new(&KeyPrefix::default(), &selected);
        let expected: Vec<Vec<u8>> = selected
            .iter()
            .map(|(rule, subject)| KeyPrefix::default().key_of(rule.id(), *subject))
            .collect();
        assert_eq!(keys.iter().collect::<Vec<_>>(), expected);
        assert!(expected.iter().map(Vec::len).sum::<usize>() > INLINE);
        assert_eq!(keys.iter().next(), Some(&b"rl:{g}:all"[..]));
    }
}
