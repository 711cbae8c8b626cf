//! Structured-field lists (RFC 9651) of rule items, `"RULE";a=N;b=M`, as
//! the `RateLimit` and `RateLimit-Policy` fields carry them.

/// How many decimal digits `n` has: estimated from its bit length
/// (`1233 / 4096` is just above log10(2)) and corrected by one comparison,
/// cheaper than `ilog10`'s divisions (a list's length is summed from these
/// on every response).
fn digits(n: u64) -> usize {
    const POWERS: [u64; 20] = {
        let mut powers = [1; 20];
        let mut i = 1;
        while i < 20 {
            powers[i] = powers[i - 1] * 10;
            i += 1;
        }
        powers
    };
    // `n | 1` has as many digits as `n` (no power of ten is odd but 1) and
    // gives 0 its one digit.
    let n = n | 1;
    let bits = (64 - n.leading_zeros()) as usize;
    let estimate = (bits * 1233) >> 12;
    estimate + usize::from(POWERS.get(estimate).is_some_and(|&power| n >= power))
}

/// One structured-field list member, `"RULE";a=N;b=M`: the rule id and
/// two parameters, each given as the text before its number, the closing
/// quote joined to the first (`"\";q="`, `";w="`): fewer, longer pieces
/// cost less to append.
pub(super) struct Item<'a> {
    pub(super) rule: &'a str,
    pub(super) a: (&'static str, u64),
    pub(super) b: (&'static str, u64),
}

impl Item<'_> {
    /// Its length in bytes, after a `, ` separator when it is not first.
    fn len(&self, first: bool) -> usize {
        let separator = if first { 0 } else { 2 };
        separator
            + 1
            + self.rule.len()
            + self.a.0.len()
            + self.b.0.len()
            + digits(self.a.1)
            + digits(self.b.1)
    }

    #[inline(always)]
    fn push_to(&self, out: &mut String) {
        out.push_str(if out.is_empty() { "\"" } else { ", \"" });
        out.push_str(self.rule);
        out.push_str(self.a.0);
        out.push_str(itoa::Buffer::new().format(self.a.1));
        out.push_str(self.b.0);
        out.push_str(itoa::Buffer::new().format(self.b.1));
    }
}

/// A list of items in a string of exactly its length (one allocation, and an
/// adapter can hand the buffer to its header type without copying it);
/// `None` for no items.
pub(super) fn list<'a>(items: impl Iterator<Item = Item<'a>> + Clone) -> Option<String> {
    let len: usize = items
        .clone()
        .enumerate()
        .map(|(i, item)| item.len(i == 0))
        .sum();
    if len == 0 {
        return None;
    }
    let mut out = String::with_capacity(len);
    items.for_each(|item| item.push_to(&mut out));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_counts_every_width() {
        let mut n = 1_u64;
        for width in 1..=19 {
            assert_eq!(digits(n), width, "{n}");
            assert_eq!(digits(n * 10 - 1), width, "{}", n * 10 - 1);
            n *= 10;
        }
        assert_eq!(digits(0), 1);
        assert_eq!(digits(u64::MAX), 20);
    }

    #[test]
    fn lists_are_built_in_one_exact_allocation() {
        let items = [
            Item {
                rule: "a",
                a: ("\";r=", 0),
                b: (";t=", 9),
            },
            Item {
                rule: "login",
                a: ("\";r=", 1_000_000),
                b: (";t=", u64::MAX),
            },
            Item {
                rule: "x.y-z",
                a: ("\";q=", 10),
                b: (";w=", 3_600),
            },
        ];
        let out = list(items.iter().map(|i| Item { ..*i })).unwrap();
        assert_eq!(
            out,
            "\"a\";r=0;t=9, \"login\";r=1000000;t=18446744073709551615, \"x.y-z\";q=10;w=3600"
        );
        assert_eq!(out.capacity(), out.len());
        assert_eq!(list(std::iter::empty()), None);
    }

    proptest::proptest! {
        #[test]
        fn digits_agrees_with_display(n in proptest::num::u64::ANY) {
            proptest::prop_assert_eq!(digits(n), n.to_string().len());
        }

        #[test]
        fn lists_read_as_format_writes_them(
            members in proptest::collection::vec(
                ("[a-zA-Z0-9._-]{1,64}", proptest::num::u64::ANY, proptest::num::u64::ANY),
                1..4,
            ),
        ) {
            let expected = members
                .iter()
                .map(|(rule, a, b)| format!("\"{rule}\";r={a};t={b}"))
                .collect::<Vec<_>>()
                .join(", ");
            let items = members.iter().map(|(rule, a, b)| Item {
                rule,
                a: ("\";r=", *a),
                b: (";t=", *b),
            });
            let out = list(items).unwrap();
            proptest::prop_assert_eq!(&out, &expected);
            proptest::prop_assert_eq!(out.capacity(), out.len());
        }
    }
}
