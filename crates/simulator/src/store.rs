//! The lazy record store behind every simulated stream.
//!
//! A stream of `N` base records holds nothing per record: record `i` is
//! generated on demand, and its `updated` timestamp is a monotone function of
//! `i` spread over the year before the anchor. Only records that were
//! modified, added or deleted live in a sparse overlay. Every modification
//! stamps "now", later than every base record, so an incremental filter
//! `updated >= T` selects a known suffix plus the touched records.
//!
//! Listings are computed from index ranges: the base part of a filtered view
//! is one contiguous range minus the overlay keys, so offset pagination over a
//! million records costs O(overlay) per page, not O(N).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeBounds};

use chrono::TimeDelta;

use super::fake::Rng;
use super::filter::Filter;
use super::util::{Ts, truncate};

/// Length of the base timeline: records spread over one year…
const SPAN_MS: i64 = 365 * 86_400_000;
/// …ending one hour before the anchor.
const GAP_MS: i64 = 3_600_000;
/// Base `created` precedes `updated` by up to this much.
const CREATED_SPREAD_MS: u64 = 30 * 86_400_000;

/// Adjusts a base record's timestamp (e.g. to vary its precision); must keep
/// the timeline strictly increasing.
pub(crate) type Refine = fn(u64, Ts) -> Ts;

/// What the overlay remembers about a touched record.
#[derive(Debug, Clone, Copy)]
struct Overlay {
    updated: Ts,
    created: Ts,
    rev: u32,
    deleted: bool,
    /// The parent of a child record added to a chosen one (a posted message).
    partition: Option<u64>,
    /// When a deleted record was deleted (stamped like a modification).
    deleted_at: Option<Ts>,
}

/// Everything a generator needs to build one record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Position in the stream (also the key the simulator uses for it).
    pub index: u64,
    /// Last modification time.
    pub updated: Ts,
    /// Creation time.
    pub created: Ts,
    /// 0 for the original record, +1 per modification.
    pub rev: u32,
    /// The parent (channel, project) of a child record.
    pub partition: Option<u64>,
    /// Position of a child record within its parent.
    pub ordinal: u64,
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// By index (the record's id) ascending.
    Index,
    /// By `updated` ascending (ties impossible: timestamps are distinct).
    Updated,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Page {
    /// The indices on this page, in order.
    pub items: Vec<u64>,
    /// How many records the whole listing has.
    pub total: u64,
}

/// One stream's state.
#[derive(Debug)]
pub(crate) struct StreamData {
    seed: u64,
    label: &'static str,
    base: u64,
    added: u64,
    parents: u64,
    first: Ts,
    anchor: Ts,
    resolution_ns: i64,
    refine: Option<Refine>,
    overlay: BTreeMap<u64, Overlay>,
    by_updated: BTreeSet<(Ts, u64)>,
    last_stamp: Option<Ts>,
    /// Whether a record was added to a chosen parent ([`Self::add_to`]).
    any_chosen: bool,
}

impl StreamData {
    /// A stream of `base` records; `parents > 0` makes it a child stream whose
    /// records are split evenly over that many parents.
    pub(crate) fn new(
        seed: u64,
        label: &'static str,
        base: u64,
        parents: u64,
        anchor: Ts,
        resolution_ns: i64,
        refine: Option<Refine>,
    ) -> Self {
        Self {
            seed,
            label,
            base,
            added: 0,
            parents,
            first: anchor - TimeDelta::milliseconds(SPAN_MS + GAP_MS),
            anchor,
            resolution_ns,
            refine,
            overlay: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            last_stamp: None,
            any_chosen: false,
        }
    }

    /// The size of the index space (base plus added, deleted included).
    pub(crate) fn len(&self) -> u64 {
        self.base + self.added
    }

    /// How many records exist now.
    pub(crate) fn live(&self) -> u64 {
        self.len() - self.overlay.values().filter(|o| o.deleted).count() as u64
    }

    /// The `updated` time of an untouched base record.
    fn base_updated(&self, i: u64) -> Ts {
        let n = self.base.max(1) as i128;
        let offset = (i as i128 * SPAN_MS as i128 / n) as i64;
        let t = self.first + TimeDelta::milliseconds(offset);
        match self.refine {
            Some(f) => f(i, t),
            None => t,
        }
    }

    fn base_created(&self, i: u64) -> Ts {
        let back = Rng::new(self.seed, self.label, i, u32::MAX).below(CREATED_SPREAD_MS);
        truncate(self.base_updated(i) - TimeDelta::milliseconds(back as i64), 1_000_000)
    }

    /// The first base index of parent `p`.
    fn partition_start(&self, p: u64) -> u64 {
        if self.parents == 0 {
            return 0;
        }
        (u128::from(p.min(self.parents)) * u128::from(self.base) / u128::from(self.parents)) as u64
    }

    /// The parent of record `i`, for child streams.
    pub(crate) fn partition_of(&self, i: u64) -> Option<u64> {
        if self.parents == 0 {
            return None;
        }
        if let Some(p) = self.chosen_partition(i) {
            return Some(p);
        }
        if i < self.base {
            let p = ((u128::from(i) + 1) * u128::from(self.parents) - 1) / u128::from(self.base);
            Some(p as u64)
        } else {
            Some((i - self.base) % self.parents)
        }
    }

    fn ordinal_of(&self, i: u64, partition: Option<u64>) -> u64 {
        match partition {
            None => i,
            Some(p) if i < self.base => i - self.partition_start(p),
            Some(p) if !self.any_chosen => {
                let base_count = self.partition_start(p + 1) - self.partition_start(p);
                base_count + (i - self.base) / self.parents
            }
            // Records were added to chosen parents: count the added ones before it.
            Some(p) => {
                let base_count = self.partition_start(p + 1) - self.partition_start(p);
                base_count + (self.base..i).filter(|j| self.partition_of(*j) == Some(p)).count() as u64
            }
        }
    }

    /// The metadata of a live record.
    pub(crate) fn meta(&self, i: u64) -> Option<Meta> {
        if i >= self.len() {
            return None;
        }
        let (updated, created, rev) = match self.overlay.get(&i) {
            Some(o) if o.deleted => return None,
            Some(o) => (o.updated, o.created, o.rev),
            None => (self.base_updated(i), self.base_created(i), 0),
        };
        let partition = self.partition_of(i);
        Some(Meta { index: i, updated, created, rev, partition, ordinal: self.ordinal_of(i, partition) })
    }

    /// A fresh modification time: now at the stream's resolution, strictly
    /// after the previous one and after every base record.
    fn stamp(&mut self, now: Ts) -> Ts {
        let res = TimeDelta::nanoseconds(self.resolution_ns.max(1));
        let mut t = truncate(now.max(self.anchor), self.resolution_ns);
        if t < self.anchor {
            t += res;
        }
        if let Some(last) = self.last_stamp
            && t <= last
        {
            t = last + res;
        }
        self.last_stamp = Some(t);
        t
    }

    /// Bumps a live record's revision and `updated` time.
    pub(crate) fn modify(&mut self, i: u64, now: Ts) -> bool {
        let Some(meta) = self.meta(i) else {
            return false;
        };
        let updated = self.stamp(now);
        self.by_updated.remove(&(meta.updated, i));
        self.by_updated.insert((updated, i));
        self.overlay.insert(
            i,
            Overlay {
                updated,
                created: meta.created,
                rev: meta.rev.saturating_add(1),
                deleted: false,
                partition: self.chosen_partition(i),
                deleted_at: None,
            },
        );
        true
    }

    /// Appends `n` records created now; returns their indices.
    pub(crate) fn add(&mut self, n: u64, now: Ts) -> std::ops::Range<u64> {
        let start = self.len();
        for i in start..start + n {
            let t = self.stamp(now);
            self.overlay.insert(
                i,
                Overlay { updated: t, created: t, rev: 0, deleted: false, partition: None, deleted_at: None },
            );
            self.by_updated.insert((t, i));
            self.added += 1;
        }
        start..start + n
    }

    /// Appends one child record created now under parent `partition`; returns its index.
    pub(crate) fn add_to(&mut self, partition: u64, now: Ts) -> u64 {
        let i = self.add(1, now).start;
        if let Some(o) = self.overlay.get_mut(&i) {
            o.partition = Some(partition);
        }
        self.any_chosen = true;
        i
    }

    fn chosen_partition(&self, i: u64) -> Option<u64> {
        self.overlay.get(&i).and_then(|o| o.partition)
    }

    /// Deletes a live record.
    pub(crate) fn delete(&mut self, i: u64) -> bool {
        let Some(meta) = self.meta(i) else {
            return false;
        };
        self.by_updated.remove(&(meta.updated, i));
        let partition = self.chosen_partition(i);
        let deleted_at = Some(self.stamp(chrono::Utc::now()));
        self.overlay.insert(
            i,
            Overlay {
                updated: meta.updated,
                created: meta.created,
                rev: meta.rev,
                deleted: true,
                partition,
                deleted_at,
            },
        );
        true
    }

    /// The latest time stamped on a change (modification, addition, deletion) so far:
    /// every later change is stamped after it, every base record before it. A change
    /// feed (Graph delta) remembers it as where the next round starts.
    pub(crate) fn watermark(&self) -> Ts {
        self.last_stamp.unwrap_or(self.anchor - TimeDelta::nanoseconds(1))
    }

    /// The records deleted after `after` (of parent `partition`, if given), in the order
    /// they were deleted.
    pub(crate) fn deleted_after(&self, after: Ts, partition: Option<u64>) -> Vec<u64> {
        let mut found: Vec<(Ts, u64)> = self
            .overlay
            .iter()
            .filter(|(_, o)| o.deleted)
            .filter_map(|(&i, o)| o.deleted_at.filter(|t| *t > after).map(|t| (t, i)))
            .filter(|(_, i)| partition.is_none_or(|p| self.partition_of(*i) == Some(p)))
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, i)| i).collect()
    }

    /// Brings a deleted record back, modified now; `false` if it is not deleted.
    pub(crate) fn restore(&mut self, i: u64, now: Ts) -> bool {
        if !self.overlay.get(&i).is_some_and(|o| o.deleted) {
            return false;
        }
        let updated = self.stamp(now);
        if let Some(o) = self.overlay.get_mut(&i) {
            o.deleted = false;
            o.deleted_at = None;
            o.updated = updated;
        }
        self.by_updated.insert((updated, i));
        true
    }

    /// Up to `limit` deleted records from index `from` on, in index order, with the
    /// metadata they had when deleted.
    pub(crate) fn deleted(&self, from: u64, limit: usize) -> Vec<Meta> {
        self.overlay
            .range(from..)
            .filter(|(_, o)| o.deleted)
            .take(limit)
            .map(|(&i, o)| {
                let partition = self.partition_of(i);
                Meta {
                    index: i,
                    updated: o.updated,
                    created: o.created,
                    rev: o.rev,
                    partition,
                    ordinal: self.ordinal_of(i, partition),
                }
            })
            .collect()
    }

    /// First index in `0..n` where `pred` turns true (`pred` monotone).
    fn first_where(n: u64, pred: impl Fn(u64) -> bool) -> u64 {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The contiguous base index range `[a, b)` that `f` allows, before the
    /// overlay keys are taken out.
    fn base_range(&self, f: &Filter) -> (u64, u64) {
        let n = self.base;
        let (mut a, mut b) = match f.partition {
            Some(p) if self.parents > 0 && p < self.parents => (self.partition_start(p), self.partition_start(p + 1)),
            Some(_) => (0, 0),
            None => (0, n),
        };
        match f.index_from {
            Bound::Included(x) => a = a.max(x),
            Bound::Excluded(x) => a = a.max(x.saturating_add(1)),
            Bound::Unbounded => {}
        }
        match f.index_to {
            Bound::Included(x) => b = b.min(x.saturating_add(1)),
            Bound::Excluded(x) => b = b.min(x),
            Bound::Unbounded => {}
        }
        match f.updated_from {
            Bound::Included(t) => a = a.max(Self::first_where(n, |i| self.base_updated(i) >= t)),
            Bound::Excluded(t) => a = a.max(Self::first_where(n, |i| self.base_updated(i) > t)),
            Bound::Unbounded => {}
        }
        match f.updated_to {
            Bound::Included(t) => b = b.min(Self::first_where(n, |i| self.base_updated(i) > t)),
            Bound::Excluded(t) => b = b.min(Self::first_where(n, |i| self.base_updated(i) >= t)),
            Bound::Unbounded => {}
        }
        (a.min(b), b)
    }

    fn overlay_matches(&self, i: u64, o: &Overlay, f: &Filter) -> bool {
        !o.deleted
            && (f.index_from, f.index_to).contains(&i)
            && (f.updated_from, f.updated_to).contains(&o.updated)
            && f.partition.is_none_or(|p| self.partition_of(i) == Some(p))
    }

    /// One page of the listing `f` in `order`, `offset` records in; `desc`
    /// reverses the order.
    pub(crate) fn select(&self, f: &Filter, order: Order, desc: bool, offset: u64, limit: usize) -> Page {
        let (a, b) = self.base_range(f);
        let o_keys: Vec<u64> = self.overlay.range(a..b).map(|(k, _)| *k).collect();
        let count_b = (b - a) - o_keys.len() as u64;
        let extra: Vec<u64> = match order {
            Order::Index => {
                self.overlay.iter().filter(|(i, o)| self.overlay_matches(**i, o, f)).map(|(i, _)| *i).collect()
            }
            Order::Updated => self
                .by_updated
                .iter()
                .filter(|(_, i)| self.overlay.get(i).is_some_and(|o| self.overlay_matches(*i, o, f)))
                .map(|(_, i)| *i)
                .collect(),
        };
        let total = count_b + extra.len() as u64;
        let limit_u = limit as u64;
        let (start, take) = if desc {
            let end = total.saturating_sub(offset);
            let start = end.saturating_sub(limit_u);
            (start, end - start)
        } else {
            (offset.min(total), limit_u.min(total.saturating_sub(offset)))
        };
        let take = take as usize;
        let mut items = match order {
            Order::Updated => {
                let mut items = Vec::with_capacity(take);
                if start < count_b {
                    Self::walk_base(a, b, &o_keys, start, take, &mut items);
                }
                let skip = start.saturating_sub(count_b) as usize;
                let room = take - items.len();
                items.extend(extra.iter().skip(skip).take(room));
                items
            }
            Order::Index => Self::merge(a, b, &o_keys, count_b, &extra, start, take),
        };
        if desc {
            items.reverse();
        }
        Page { items, total }
    }

    /// The `k`-th element of `[a, b) \ o_keys`.
    fn kth_base(a: u64, o_keys: &[u64], k: u64) -> u64 {
        let mut x = a + k;
        for &o in o_keys {
            if o <= x {
                x += 1;
            } else {
                break;
            }
        }
        x
    }

    /// Pushes up to `take` elements of `[a, b) \ o_keys` starting at rank `k`.
    fn walk_base(a: u64, b: u64, o_keys: &[u64], k: u64, take: usize, out: &mut Vec<u64>) {
        let mut x = Self::kth_base(a, o_keys, k);
        let mut oi = o_keys.partition_point(|&o| o < x);
        while out.len() < take && x < b {
            if o_keys.get(oi) == Some(&x) {
                oi += 1;
            } else {
                out.push(x);
            }
            x += 1;
        }
    }

    /// Ranks `start..start+take` of the index-ordered merge of the base part
    /// `[a, b) \ o_keys` and the sorted overlay part `extra`.
    fn merge(a: u64, b: u64, o_keys: &[u64], count_b: u64, extra: &[u64], start: u64, take: usize) -> Vec<u64> {
        // How many overlay records come before merged rank `start`.
        let mut before = 0;
        let mut oi = 0;
        for (j, &v) in extra.iter().enumerate() {
            let c = v.clamp(a, b);
            while oi < o_keys.len() && o_keys[oi] < c {
                oi += 1;
            }
            let pos = j as u64 + (c - a) - oi as u64;
            if pos < start {
                before = j + 1;
            } else {
                break;
            }
        }
        let base_rank = start - before as u64;
        let mut x = if base_rank < count_b { Self::kth_base(a, o_keys, base_rank) } else { b };
        let mut oi = o_keys.partition_point(|&o| o < x);
        let mut vi = before;
        let mut out = Vec::with_capacity(take);
        while out.len() < take {
            while x < b && o_keys.get(oi) == Some(&x) {
                oi += 1;
                x += 1;
            }
            let next_b = (x < b).then_some(x);
            match (next_b, extra.get(vi)) {
                (Some(xb), Some(&v)) if v < xb => {
                    out.push(v);
                    vi += 1;
                }
                (Some(xb), _) => {
                    out.push(xb);
                    x += 1;
                }
                (None, Some(&v)) => {
                    out.push(v);
                    vi += 1;
                }
                (None, None) => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn stream(n: u64, parents: u64) -> StreamData {
        StreamData::new(1, "t", n, parents, Utc::now(), 1_000_000, None)
    }

    /// The reference answer: materialise every live record and sort.
    fn naive(s: &StreamData, f: &Filter, order: Order) -> Vec<u64> {
        let mut metas: Vec<Meta> = (0..s.len())
            .filter_map(|i| s.meta(i))
            .filter(|m| {
                (f.index_from, f.index_to).contains(&m.index)
                    && (f.updated_from, f.updated_to).contains(&m.updated)
                    && f.partition.is_none_or(|p| m.partition == Some(p))
            })
            .collect();
        match order {
            Order::Index => metas.sort_by_key(|m| m.index),
            Order::Updated => metas.sort_by_key(|m| (m.updated, m.index)),
        }
        metas.iter().map(|m| m.index).collect()
    }

    fn paged(s: &StreamData, f: &Filter, order: Order, desc: bool, size: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = s.select(f, order, desc, offset, size);
            if page.items.is_empty() {
                break;
            }
            offset += page.items.len() as u64;
            out.extend(page.items);
        }
        out
    }

    #[test]
    fn base_timeline_is_strictly_increasing_and_before_anchor() {
        let s = stream(1000, 0);
        for i in 1..1000 {
            assert!(s.base_updated(i - 1) < s.base_updated(i));
            assert!(s.base_created(i) <= s.base_updated(i));
        }
        assert!(s.base_updated(999) < s.anchor);
    }

    #[test]
    fn listings_match_a_naive_model_after_mutations() {
        let mut s = stream(50, 4);
        let now = Utc::now();
        for i in [0, 3, 17, 18, 31, 49] {
            assert!(s.modify(i, now));
        }
        assert!(s.delete(5));
        assert!(s.delete(18));
        assert!(!s.delete(18));
        assert!(!s.modify(18, now));
        assert_eq!(s.add(7, now), 50..57);
        assert!(s.modify(52, now));
        let cut = s.meta(30).map(|m| m.updated);
        let filters = {
            let mut fs = vec![Filter::all()];
            let mut f = Filter::all();
            f.updated_from = cut.map_or(Bound::Unbounded, Bound::Included);
            fs.push(f.clone());
            f.updated_from = cut.map_or(Bound::Unbounded, Bound::Excluded);
            fs.push(f.clone());
            f.index_from = Bound::Excluded(10);
            f.index_to = Bound::Included(52);
            fs.push(f.clone());
            for p in 0..5 {
                let mut g = Filter::all();
                g.partition = Some(p);
                fs.push(g);
            }
            fs
        };
        for f in &filters {
            for order in [Order::Index, Order::Updated] {
                let expected = naive(&s, f, order);
                for size in [1, 3, 7, 100] {
                    assert_eq!(paged(&s, f, order, false, size), expected, "{f:?} {order:?}");
                    let mut rev = expected.clone();
                    rev.reverse();
                    assert_eq!(paged(&s, f, order, true, size), rev, "desc {f:?} {order:?}");
                }
                assert_eq!(s.select(f, order, false, 0, 1).total, expected.len() as u64);
            }
        }
        assert_eq!(s.live(), 55);
    }

    #[test]
    fn partitions_cover_the_base_exactly() {
        let s = stream(10, 3);
        let parts: Vec<Option<u64>> = (0..10).map(|i| s.partition_of(i)).collect();
        assert_eq!(parts.iter().filter(|p| **p == Some(0)).count(), 3);
        assert_eq!(parts.iter().filter(|p| **p == Some(2)).count(), 4);
        assert_eq!(s.meta(3).map(|m| (m.partition, m.ordinal)), Some((Some(1), 0)));
        let none = stream(0, 3);
        assert_eq!(none.select(&Filter::all(), Order::Index, false, 0, 10).total, 0);
    }

    #[test]
    fn a_million_records_page_without_materialising() {
        let mut s = stream(1_000_000, 0);
        s.modify(10, Utc::now());
        let page = s.select(&Filter::all(), Order::Updated, false, 999_990, 100);
        assert_eq!(page.total, 1_000_000);
        assert_eq!(page.items.len(), 10);
        assert_eq!(page.items.last(), Some(&10));
    }
}
