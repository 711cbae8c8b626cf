//! [`ConvertedValues`]: an adapter's header values, made once per shared
//! buffer.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::Bytes;

use super::FieldValue;

/// Values a thread remembers: as many as the policy memo hands out shared
/// buffers for, give or take (an app's routes each have one policy).
const SLOTS: usize = 8;

/// What an adapter's header type made of shared [`FieldValue`]s, found
/// again by buffer.
///
/// The `RateLimit-Policy` value is remembered per thread and handed out as
/// a shared buffer (see [`FieldValue`]), but a header type such as http's
/// `HeaderValue` checks every byte of a buffer it is given: about 5
/// instructions a byte, on every response. Kept in a thread-local
/// `ConvertedValues`, the header value made of a buffer is cloned instead
/// the next time the same buffer comes back.
///
/// A value is found by its buffer's address and length. That is sound
/// without comparing bytes: a remembered value keeps its buffer alive, so
/// no other buffer can be at that address, and a buffer is never changed.
/// A value the header type copied instead of keeping its buffer is simply
/// never found again.
///
/// ```
/// use std::cell::RefCell;
/// use ratelimit_core::headers::{ConvertedValues, FieldValue};
///
/// thread_local! {
///     static POLICIES: RefCell<ConvertedValues<bytes::Bytes>> =
///         const { RefCell::new(ConvertedValues::new()) };
/// }
///
/// let shared = FieldValue::from(String::from("\"default\";q=10;w=1"));
/// let mut conversions = 0;
/// for _ in 0..3 {
///     let value = ConvertedValues::convert_in(&POLICIES, shared.clone(), |bytes| {
///         conversions += 1;
///         Some(bytes)
///     });
///     assert_eq!(value.as_deref(), Some(&b"\"default\";q=10;w=1"[..]));
/// }
/// assert_eq!(conversions, 1);
/// ```
#[derive(Debug)]
pub struct ConvertedValues<V> {
    slots: [Option<V>; SLOTS],
    /// The slot replaced next once all are taken.
    next: usize,
}

impl<V> Default for ConvertedValues<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> ConvertedValues<V> {
    /// Remembers nothing yet.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; SLOTS],
            next: 0,
        }
    }
}

impl<V: Clone + AsRef<[u8]>> ConvertedValues<V> {
    /// `value` as `convert` makes it from its buffer, or a clone of what it
    /// made of the same buffer before; `None` when `convert` refuses it.
    pub fn convert(
        &mut self,
        value: FieldValue,
        convert: impl FnOnce(Bytes) -> Option<V>,
    ) -> Option<V> {
        let bytes = value.into_bytes();
        let seen = self.slots.iter().flatten().find(|made| {
            let made = made.as_ref();
            made.as_ptr() == bytes.as_ptr() && made.len() == bytes.len()
        });
        if let Some(made) = seen {
            return Some(made.clone());
        }
        let made = convert(bytes)?;
        if let Some(slot) = self.slots.get_mut(self.next) {
            *slot = Some(made.clone());
        }
        self.next = (self.next + 1) % SLOTS;
        Some(made)
    }

    /// [`convert`](Self::convert) with the thread's `ConvertedValues` in
    /// `key`; converts without remembering while the thread is shutting
    /// down or the memo is in use (a `convert` that converts again).
    pub fn convert_in(
        key: &'static LocalKey<RefCell<Self>>,
        value: FieldValue,
        convert: impl FnOnce(Bytes) -> Option<V>,
    ) -> Option<V> {
        // Held outside the closure so that whichever way it goes, the value
        // and `convert` are used once.
        let mut args = Some((value, convert));
        let remembered = key.try_with(|memo| {
            let mut memo = memo.try_borrow_mut().ok()?;
            let (value, convert) = args.take()?;
            Some(memo.convert(value, convert))
        });
        match (remembered, args) {
            (Ok(Some(made)), _) => made,
            (_, Some((value, convert))) => convert(value.into_bytes()),
            (_, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str) -> FieldValue {
        FieldValue::from(text.to_owned())
    }

    #[test]
    fn the_same_buffer_is_converted_once() {
        let mut memo = ConvertedValues::<Bytes>::new();
        let shared = field("\"a\";q=1;w=1");
        let mut calls = 0;
        for _ in 0..3 {
            let made = memo.convert(shared.clone(), |b| {
                calls += 1;
                Some(b)
            });
            assert_eq!(made.as_deref(), Some(&b"\"a\";q=1;w=1"[..]));
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn equal_text_in_another_buffer_is_converted_again() {
        let mut memo = ConvertedValues::<Bytes>::new();
        let mut calls = 0;
        for _ in 0..2 {
            // A new buffer each time, though the text is the same.
            let made = memo.convert(field("\"a\";q=1;w=1"), |b| {
                calls += 1;
                Some(b)
            });
            assert_eq!(made.as_deref(), Some(&b"\"a\";q=1;w=1"[..]));
        }
        assert_eq!(calls, 2);
    }

    #[test]
    fn a_refused_value_is_not_remembered() {
        let mut memo = ConvertedValues::<Bytes>::new();
        let shared = field("x");
        assert_eq!(memo.convert(shared.clone(), |_| None), None);
        assert_eq!(
            memo.convert(shared, Some).as_deref(),
            Some(&b"x"[..]),
            "converted once accepted"
        );
    }

    #[test]
    fn past_its_size_the_oldest_values_are_replaced() {
        let mut memo = ConvertedValues::<Bytes>::new();
        let fields: Vec<FieldValue> = (0..SLOTS + 1).map(|i| field(&i.to_string())).collect();
        for f in &fields {
            memo.convert(f.clone(), Some);
        }
        // The first was replaced by the last; the second is still held.
        let mut converted = Vec::new();
        for f in [&fields[1], &fields[0]] {
            memo.convert(f.clone(), |b| {
                converted.push(b.clone());
                Some(b)
            });
        }
        assert_eq!(converted, vec![Bytes::from_static(b"0")]);
    }

    #[test]
    fn a_memo_in_use_converts_without_remembering() {
        thread_local! {
            static MEMO: RefCell<ConvertedValues<Bytes>> = const { RefCell::new(ConvertedValues::new()) };
        }
        let outer = ConvertedValues::convert_in(&MEMO, field("outer"), |b| {
            // Re-entered while the memo is borrowed: still answered.
            let inner = ConvertedValues::convert_in(&MEMO, field("inner"), Some);
            assert_eq!(inner.as_deref(), Some(&b"inner"[..]));
            Some(b)
        });
        assert_eq!(outer.as_deref(), Some(&b"outer"[..]));
    }
}
