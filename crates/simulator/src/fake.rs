//! Deterministic, seeded generation of record contents: a tiny hash-based
//! random source and word lists. A record is a pure function of
//! (seed, stream, index, revision), so nothing is ever stored.

/// A splitmix64 step.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a label (FNV-1a), used to separate streams.
pub(crate) fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A deterministic random source for one record.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// The source for (seed, stream label, index, revision).
    pub(crate) fn new(seed: u64, label: &str, index: u64, rev: u32) -> Self {
        Self(mix(seed ^ mix(label_hash(label) ^ mix(index ^ (u64::from(rev) << 48)))))
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// One element of a non-empty list.
    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len() as u64) as usize).copied().unwrap_or_default()
    }

    /// `n` random decimal digits.
    pub(crate) fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|i| {
                let d = self.below(10) as u8;
                // No leading zero, so the value keeps its width as a number.
                char::from(b'0' + if i == 0 && d == 0 { 1 } else { d })
            })
            .collect()
    }

    /// `true` with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Uppercase base-36 rendering of `n`, left-padded with zeros to `width`.
pub(crate) fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Parses an uppercase base-36 number.
pub(crate) fn parse_base36(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 36).ok()
}

/// Uppercase letters for `n` in bijective base 26: 0 → A, 25 → Z, 26 → AA.
pub(crate) fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The inverse of [`letters`].
pub(crate) fn parse_letters(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) || s.len() > 12 {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 26 + u64::from(b - b'A') + 1;
    }
    Some(n - 1)
}

/// A GUID-shaped identifier derived from a hash.
pub(crate) fn guid(rng: &mut Rng) -> String {
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Given names.
pub(crate) const FIRST_NAMES: &[&str] = &[
    "Amelia", "Oliver", "Isla", "George", "Ava", "Harry", "Mia", "Noah", "Ivy", "Leo", "Freya", "Oscar", "Grace",
    "Arthur", "Lily", "Muhammad", "Ella", "Jack", "Sophia", "Charlie", "Evie", "Thomas", "Poppy", "Jacob", "Rosie",
    "Alfie", "Aisha", "Ethan", "Zara", "Samuel",
];

/// Family names.
pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Khan", "Clarke", "Jackson", "Wood", "Harris",
    "Lewis", "Martin", "Cooper", "Hill", "Ward", "Morris", "Okafor",
];

/// Words that make company names.
pub(crate) const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Wonka",
    "Aperture",
    "Pied Piper",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Dunder",
    "Massive",
];

/// Company name suffixes.
pub(crate) const COMPANY_SUFFIXES: &[&str] =
    &["Ltd", "Group", "Holdings", "Partners", "Solutions", "Logistics", "Care", "Engineering"];

/// Apprenticeship programmes.
pub(crate) const PROGRAMMES: &[&str] = &[
    "Software Developer L4",
    "Data Analyst L4",
    "Business Administrator L3",
    "Customer Service Practitioner L2",
    "Team Leader or Supervisor L3",
    "Operations Departmental Manager L5",
    "Digital Marketer L3",
    "Network Engineer L4",
    "Accounting Technician L4",
    "Adult Care Worker L2",
];

/// Divisions and locations.
pub(crate) const DIVISIONS: &[&str] = &["North", "South", "East", "West", "Midlands", "Scotland", "Wales", "London"];

/// Industries (HubSpot and Salesforce pick lists).
pub(crate) const INDUSTRIES: &[&str] = &[
    "COMPUTER_SOFTWARE",
    "HOSPITAL_HEALTH_CARE",
    "FINANCIAL_SERVICES",
    "RETAIL",
    "EDUCATION_MANAGEMENT",
    "CONSTRUCTION",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "HOSPITALITY",
];

/// Words for titles, summaries and message text.
pub(crate) const WORDS: &[&str] = &[
    "review",
    "update",
    "deploy",
    "invoice",
    "onboarding",
    "report",
    "migration",
    "training",
    "meeting",
    "renewal",
    "audit",
    "dashboard",
    "sync",
    "release",
    "budget",
    "feedback",
    "schedule",
    "contract",
    "support",
    "roadmap",
];

/// `count` words joined by spaces.
pub(crate) fn sentence(rng: &mut Rng, count: usize) -> String {
    let words: Vec<&str> = (0..count).map(|_| rng.pick(WORDS)).collect();
    let mut s = words.join(" ");
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + s.get(1..).unwrap_or_default();
    }
    s
}

/// A company name.
pub(crate) fn company(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(COMPANY_WORDS), rng.pick(COMPANY_SUFFIXES))
}

/// A lowercase DNS-like label from a company name.
pub(crate) fn domain_label(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip() {
        for n in [0, 1, 25, 26, 27, 701, 702, 18_277] {
            assert_eq!(parse_letters(&letters(n)), Some(n), "{n}");
        }
        assert_eq!(letters(0), "A");
        assert_eq!(letters(26), "AA");
    }

    #[test]
    fn base36_round_trips() {
        assert_eq!(base36(35, 3), "00Z");
        assert_eq!(parse_base36(&base36(123_456_789, 9)), Some(123_456_789));
    }

    #[test]
    fn rng_is_deterministic_per_record() {
        let a = Rng::new(7, "contacts", 42, 0).next();
        assert_eq!(a, Rng::new(7, "contacts", 42, 0).next());
        assert_ne!(a, Rng::new(7, "contacts", 43, 0).next());
        assert_ne!(a, Rng::new(7, "contacts", 42, 1).next());
        assert_ne!(a, Rng::new(8, "contacts", 42, 0).next());
    }
}
