//! Record selection shared by every provider: a conjunction of bounds on
//! the `updated` time and the index, plus an optional parent, and the
//! comparisons providers' filter languages map onto it.

use std::ops::Bound;

use super::util::Ts;

/// Which records a listing selects. Bounds are inclusive or exclusive.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// Lower bound on `updated`.
    pub updated_from: Bound<Ts>,
    /// Upper bound on `updated`.
    pub updated_to: Bound<Ts>,
    /// Lower bound on the index.
    pub index_from: Bound<u64>,
    /// Upper bound on the index.
    pub index_to: Bound<u64>,
    /// Only children of this parent.
    pub partition: Option<u64>,
}

impl Filter {
    /// Selects every live record.
    pub(crate) fn all() -> Self {
        Self {
            updated_from: Bound::Unbounded,
            updated_to: Bound::Unbounded,
            index_from: Bound::Unbounded,
            index_to: Bound::Unbounded,
            partition: None,
        }
    }
}

/// A comparison in a provider's filter language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    /// `=`, `eq`, `EQ`.
    Eq,
    /// `>`, `gt`, `GT`.
    Gt,
    /// `>=`, `ge`, `GTE`.
    Ge,
    /// `<`, `lt`, `LT`.
    Lt,
    /// `<=`, `le`, `LTE`.
    Le,
}

impl Cmp {
    /// Parses `=`, `>`, `>=`, `<`, `<=`, OData words (`ge`) or HubSpot
    /// operators (`GTE`), in any case.
    pub(crate) fn parse(op: &str) -> Option<Self> {
        Some(match op.to_ascii_lowercase().as_str() {
            "=" | "eq" => Cmp::Eq,
            ">" | "gt" => Cmp::Gt,
            ">=" | "ge" | "gte" => Cmp::Ge,
            "<" | "lt" => Cmp::Lt,
            "<=" | "le" | "lte" => Cmp::Le,
            _ => return None,
        })
    }

    fn bounds<T: Copy>(self, v: T) -> (Bound<T>, Bound<T>) {
        match self {
            Cmp::Eq => (Bound::Included(v), Bound::Included(v)),
            Cmp::Gt => (Bound::Excluded(v), Bound::Unbounded),
            Cmp::Ge => (Bound::Included(v), Bound::Unbounded),
            Cmp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
            Cmp::Le => (Bound::Unbounded, Bound::Included(v)),
        }
    }
}

/// The tighter of two lower bounds.
fn max_lower<T: Ord + Copy>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i > e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_upper<T: Ord + Copy>(a: Bound<T>, b: Bound<T>) -> Bound<T> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
        (Bound::Included(i), Bound::Excluded(e)) | (Bound::Excluded(e), Bound::Included(i)) => {
            if i < e {
                Bound::Included(i)
            } else {
                Bound::Excluded(e)
            }
        }
    }
}

impl Filter {
    /// Narrows the filter with `updated <cmp> t`.
    pub(crate) fn updated(&mut self, cmp: Cmp, t: Ts) {
        let (lo, hi) = cmp.bounds(t);
        self.updated_from = max_lower(self.updated_from, lo);
        self.updated_to = min_upper(self.updated_to, hi);
    }

    /// Narrows the filter with `id <cmp> id` for 1-based ids (`id = index + 1`).
    pub(crate) fn id(&mut self, cmp: Cmp, id: u64) {
        match (cmp, id.checked_sub(1)) {
            (_, Some(index)) => self.index(cmp, index),
            // Every id is above 0.
            (Cmp::Gt | Cmp::Ge, None) => {}
            // Nothing is at or below id 0.
            (_, None) => self.index(Cmp::Lt, 0),
        }
    }

    /// Whether a record with `meta` falls within the filter's bounds (and parent).
    pub(crate) fn matches_meta(&self, meta: &super::store::Meta) -> bool {
        use std::ops::RangeBounds;
        (self.updated_from, self.updated_to).contains(&meta.updated)
            && (self.index_from, self.index_to).contains(&meta.index)
            && self.partition.is_none_or(|p| meta.partition == Some(p))
    }

    /// Narrows the filter with `index <cmp> i`.
    pub(crate) fn index(&mut self, cmp: Cmp, i: u64) {
        let (lo, hi) = cmp.bounds(i);
        self.index_from = max_lower(self.index_from, lo);
        self.index_to = min_upper(self.index_to, hi);
    }
}
