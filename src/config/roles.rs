//! Role grants: which streams a user's own connections may sync at a company, by the
//! user's role there. A tenant file grants them per role:
//!
//! ```toml
//! [roles.sales]
//! streams = ["hubspot.*"]
//! [roles.developer]
//! streams = ["jira.issues", "hubspot.contacts"]
//! ```
//!
//! Patterns are `provider.stream`, `provider.*` (every stream of the provider) or `*`
//! (everything). Deny by default: a role without an entry at a company may sync nothing
//! there. Company connections are not subject to grants.

use std::collections::BTreeMap;
use std::fmt;

use super::diag::{Diagnostics, join};
use super::manifest::Manifests;
use super::source::{typed, unknown_keys};
use crate::model::{ProviderId, RoleName, StreamName, TenantId};

/// Streams one grant covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StreamPattern {
    /// `*`: every stream of every provider.
    Any,
    /// `provider.*`: every stream of one provider.
    Provider(ProviderId),
    /// `provider.stream`: one stream.
    Stream(ProviderId, StreamName),
}

impl StreamPattern {
    /// Parses `*`, `provider.*` or `provider.stream`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{text}` is not a stream pattern ({why}; expected `provider.stream`, `provider.*` or `*`)")
        };
        if text == "*" {
            return Ok(Self::Any);
        }
        let Some((provider, stream)) = text.split_once('.') else {
            return Err(bad("no `.` between provider and stream"));
        };
        let provider = ProviderId::parse(provider).map_err(|e| bad(&e.to_string()))?;
        if stream == "*" {
            return Ok(Self::Provider(provider));
        }
        let stream = StreamName::parse(stream).map_err(|e| bad(&e.to_string()))?;
        Ok(Self::Stream(provider, stream))
    }

    /// Whether the pattern covers `stream` of `provider`.
    pub fn matches(&self, provider: &ProviderId, stream: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Provider(p) => p == provider,
            Self::Stream(p, s) => p == provider && s.as_str() == stream,
        }
    }
}

impl fmt::Display for StreamPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Provider(p) => write!(f, "{p}.*"),
            Self::Stream(p, s) => write!(f, "{p}.{s}"),
        }
    }
}

/// Why a user connection does not sync a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The owner has no role at the tenant (they are no longer a member).
    NoRole,
    /// The role has no `[roles.<role>]` entry at the tenant: it is granted nothing.
    NoEntry(RoleName),
    /// The role's patterns do not cover the stream.
    NotGranted(RoleName),
}

impl Denied {
    /// One sentence naming the tenant, e.g. "not granted to role `developer` at acme".
    pub fn describe(&self, tenant: &TenantId) -> String {
        match self {
            Self::NoRole => format!("the owner has no role at {tenant} (not a member)"),
            Self::NoEntry(role) => format!(
                "role `{role}` has no `[roles.{role}]` entry at {tenant}, so it is granted nothing (deny by default)"
            ),
            Self::NotGranted(role) => format!("not granted to role `{role}` at {tenant}"),
        }
    }
}

/// One tenant's role grants: role → the stream patterns it may sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleGrants {
    roles: BTreeMap<RoleName, Vec<StreamPattern>>,
}

impl RoleGrants {
    /// Grants as the store keeps them (validated when the tenant file was applied). A
    /// pattern that does not parse grants nothing.
    pub fn from_stored(stored: &BTreeMap<RoleName, Vec<String>>) -> Self {
        let roles = stored
            .iter()
            .map(|(role, patterns)| {
                (role.clone(), patterns.iter().filter_map(|p| StreamPattern::parse(p).ok()).collect())
            })
            .collect();
        Self { roles }
    }

    /// The roles and their patterns.
    pub fn roles(&self) -> &BTreeMap<RoleName, Vec<StreamPattern>> {
        &self.roles
    }

    /// Whether `role` (the connection owner's role, `None` for none) may sync `stream`
    /// of `provider`, and why not.
    pub fn check(&self, role: Option<&RoleName>, provider: &ProviderId, stream: &str) -> Result<(), Denied> {
        let role = role.ok_or(Denied::NoRole)?;
        let patterns = self.roles.get(role).ok_or_else(|| Denied::NoEntry(role.clone()))?;
        if patterns.iter().any(|p| p.matches(provider, stream)) {
            Ok(())
        } else {
            Err(Denied::NotGranted(role.clone()))
        }
    }
}

/// Validates a `roles` table (role → `{ streams = [patterns] }`) of a tenant file (`at` =
/// `""`) or a preset (`at` = `presets.<name>`), reporting every problem under
/// `<at>.roles.<role>…`. Returns the valid roles with their patterns in canonical text.
pub(super) fn parse_roles(
    roles: toml::Table,
    manifests: &Manifests,
    diag: &mut Diagnostics,
    file: &str,
    at: &str,
) -> BTreeMap<RoleName, Vec<String>> {
    #[derive(serde::Deserialize)]
    struct RawRole {
        streams: Vec<String>,
    }
    let mut out = BTreeMap::new();
    for (name, value) in roles {
        let path = join(&join(at, "roles"), &name);
        let role = RoleName::parse(&name).map_err(|e| diag.push(file, &path, e.to_string())).ok();
        unknown_keys(&value, &["streams"], diag, file, &path);
        let Some(raw) = typed::<RawRole>(value, diag, file, &path) else {
            continue;
        };
        let mut patterns = Vec::new();
        for (i, text) in raw.streams.iter().enumerate() {
            let at = format!("{}[{i}]", join(&path, "streams"));
            match StreamPattern::parse(text) {
                Ok(pattern) => {
                    if let Err(e) = check_pattern(&pattern, manifests) {
                        diag.push(file, &at, e);
                    }
                    patterns.push(pattern.to_string());
                }
                Err(e) => diag.push(file, &at, e),
            }
        }
        if let Some(role) = role {
            out.insert(role, patterns);
        }
    }
    out
}

/// Checks a pattern names a known provider and one of its streams.
fn check_pattern(pattern: &StreamPattern, manifests: &Manifests) -> Result<(), String> {
    let (provider, stream) = match pattern {
        StreamPattern::Any => return Ok(()),
        StreamPattern::Provider(p) => (p, None),
        StreamPattern::Stream(p, s) => (p, Some(s)),
    };
    let Some(manifest) = manifests.get(provider.as_str()) else {
        return Err(format!("no connector manifest for provider `{provider}` (known: {})", manifests.names()));
    };
    match stream {
        Some(s) if !manifest.streams.contains_key(s) => {
            let known: Vec<&str> = manifest.streams.keys().map(StreamName::as_str).collect();
            Err(format!("provider `{provider}` has no stream `{s}` (known: {})", known.join(", ")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> RoleName {
        RoleName::parse(name).unwrap()
    }

    fn provider(id: &str) -> ProviderId {
        ProviderId::parse(id).unwrap()
    }

    #[test]
    fn patterns_parse_print_and_match() {
        let hubspot = provider("hubspot");
        let jira = provider("jira");
        for (text, hubspot_contacts, hubspot_deals, jira_issues) in [
            ("*", true, true, true),
            ("hubspot.*", true, true, false),
            ("hubspot.contacts", true, false, false),
            ("jira.issues", false, false, true),
        ] {
            let p = StreamPattern::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(p.matches(&hubspot, "contacts"), hubspot_contacts, "{text}");
            assert_eq!(p.matches(&hubspot, "deals"), hubspot_deals, "{text}");
            assert_eq!(p.matches(&jira, "issues"), jira_issues, "{text}");
        }
        for bad in ["", "hubspot", "hubspot.", ".contacts", "HubSpot.contacts", "hubspot.con tacts", "*.contacts"] {
            let err = StreamPattern::parse(bad).unwrap_err();
            assert!(err.contains("is not a stream pattern"), "{bad}: {err}");
        }
    }

    #[test]
    fn grants_deny_by_default_and_say_why() {
        let stored = BTreeMap::from([
            (role("sales"), vec!["hubspot.*".to_owned()]),
            (role("developer"), vec!["hubspot.contacts".to_owned(), "not a pattern".to_owned()]),
            (role("intern"), vec![]),
        ]);
        let grants = RoleGrants::from_stored(&stored);
        let hubspot = provider("hubspot");
        assert_eq!(grants.check(Some(&role("sales")), &hubspot, "deals"), Ok(()));
        assert_eq!(grants.check(Some(&role("developer")), &hubspot, "contacts"), Ok(()));
        assert_eq!(
            grants.check(Some(&role("developer")), &hubspot, "deals"),
            Err(Denied::NotGranted(role("developer")))
        );
        assert_eq!(grants.check(Some(&role("intern")), &hubspot, "contacts"), Err(Denied::NotGranted(role("intern"))));
        assert_eq!(grants.check(Some(&role("guest")), &hubspot, "contacts"), Err(Denied::NoEntry(role("guest"))));
        assert_eq!(grants.check(None, &hubspot, "contacts"), Err(Denied::NoRole));
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(Denied::NotGranted(role("developer")).describe(&acme), "not granted to role `developer` at acme");
        assert!(Denied::NoEntry(role("guest")).describe(&acme).contains("deny by default"));
    }
}
