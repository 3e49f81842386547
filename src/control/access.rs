//! Which scope a caller gets. A control-socket peer's widest scope comes from its uid
//! and gid through `[control]` ([`ControlAccess`]); the client may ask for a narrower
//! one, never a wider one. An HTTP API request carries its key's scope, set by the API
//! front end. A caller nobody established is refused.

use crate::config::control::ControlAccess;

use super::protocol::{Caller, Scope};

/// The widest scope a peer may have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Operator,
    /// Admin of these tenants (at least one).
    TenantAdmin(Vec<String>),
    /// Not named in `[control]`.
    Nobody,
}

/// Why a request was refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// A bounded label for the metric: `unknown_peer`, `wider_scope` or `unknown_caller`.
    pub reason: &'static str,
    pub message: String,
}

/// The widest scope of the peer `uid`/`gid`.
pub fn allowed(access: &ControlAccess, uid: u32, gid: u32) -> Allowed {
    if access.operators.contains(uid, gid) {
        return Allowed::Operator;
    }
    let tenants: Vec<String> =
        access.tenant_admins.iter().filter(|(_, h)| h.contains(uid, gid)).map(|(t, _)| t.clone()).collect();
    if tenants.is_empty() { Allowed::Nobody } else { Allowed::TenantAdmin(tenants) }
}

/// The scope `caller` acts with when it asks for `asked`, or why it may not.
pub fn scope_for(access: &ControlAccess, caller: &Caller, asked: &Scope) -> Result<Scope, Denied> {
    let (uid, gid) = match caller {
        Caller::Peer { uid, gid } => (*uid, *gid),
        // The API front end set the key's scope.
        Caller::ApiKey { .. } => return Ok(asked.clone()),
        Caller::Unknown => {
            return Err(Denied {
                reason: "unknown_caller",
                message: "the request's caller is not established; refused".into(),
            });
        }
    };
    let who = peer_name(access, uid);
    match (allowed(access, uid, gid), asked) {
        (Allowed::Operator, _) => Ok(asked.clone()),
        (Allowed::Nobody, _) => Err(Denied {
            reason: "unknown_peer",
            message: format!(
                "{who} (gid {gid}) may not use this control socket: it is neither an operator nor a tenant admin \
                 in [control] of tributary.toml"
            ),
        }),
        (Allowed::TenantAdmin(tenants), Scope::Operator) => Err(Denied {
            reason: "wider_scope",
            message: format!(
                "{who} is a tenant admin, not an operator: ask for its tenant's scope (`tributary ctl --as-tenant {}`)",
                tenants.join("|")
            ),
        }),
        (Allowed::TenantAdmin(tenants), Scope::Tenant { tenant }) if tenants.contains(tenant) => Ok(asked.clone()),
        (Allowed::TenantAdmin(tenants), Scope::Tenant { tenant }) => Err(Denied {
            reason: "wider_scope",
            message: format!(
                "{who} is not an admin of tenant `{tenant}` (it administers {})",
                tenants.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// `uid 1001 (alice)`, or `uid 1001` for a uid without a name.
pub fn peer_name(access: &ControlAccess, uid: u32) -> String {
    match access.names.get(&uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// Who `caller` is in the audit log: `peer:1001(alice)`, `key:deploy-bot`, `unknown`.
pub fn actor(access: &ControlAccess, caller: &Caller) -> String {
    match caller {
        Caller::Peer { uid, .. } => match access.names.get(uid) {
            Some(name) => format!("peer:{uid}({name})"),
            None => format!("peer:{uid}"),
        },
        Caller::ApiKey { name } => format!("key:{name}"),
        Caller::Unknown => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::control::{Accounts, ControlSettings};

    /// `[control]` on a fake system: the daemon runs as 900; 1001 administers acme, the
    /// group 2001 (bob's) administers globex and acme; carol (1003) is in the ops group.
    fn access() -> ControlAccess {
        let accounts = Accounts::parse(
            "tributary:x:900:900::/:/bin/false\nalice:x:1001:1001::/:/bin/sh\nbob:x:1002:2001::/:/bin/sh\n\
             carol:x:1003:1003::/:/bin/sh\n",
            "ops:x:2000:carol\nadmins:x:2001:\n",
        );
        let settings: ControlSettings = toml::from_str(
            "operator_groups = [\"ops\"]\n[tenants.acme]\nadmins = [\"alice\"]\nadmin_groups = [2001]\n\
             [tenants.globex]\nadmin_groups = [\"admins\"]\n",
        )
        .unwrap();
        settings.resolve(&accounts, 900).unwrap()
    }

    fn peer(uid: u32, gid: u32) -> Caller {
        Caller::Peer { uid, gid }
    }

    fn tenant(t: &str) -> Scope {
        Scope::Tenant { tenant: t.into() }
    }

    #[test]
    fn peers_map_to_their_widest_scope() {
        let a = access();
        assert_eq!(allowed(&a, 900, 900), Allowed::Operator);
        assert_eq!(allowed(&a, 0, 0), Allowed::Operator);
        assert_eq!(allowed(&a, 1003, 1003), Allowed::Operator, "carol, through the ops group's member list");
        assert_eq!(allowed(&a, 7777, 2000), Allowed::Operator, "any peer whose gid is the ops group");
        assert_eq!(allowed(&a, 1001, 1001), Allowed::TenantAdmin(vec!["acme".into()]));
        assert_eq!(allowed(&a, 1002, 2001), Allowed::TenantAdmin(vec!["acme".into(), "globex".into()]));
        assert_eq!(allowed(&a, 4242, 4242), Allowed::Nobody);
    }

    #[test]
    fn a_peer_may_narrow_its_scope_never_widen_it() {
        let a = access();
        // Operators may act as anyone.
        assert_eq!(scope_for(&a, &peer(900, 900), &Scope::Operator), Ok(Scope::Operator));
        assert_eq!(scope_for(&a, &peer(900, 900), &tenant("acme")), Ok(tenant("acme")));
        // A tenant admin: its own tenants only.
        assert_eq!(scope_for(&a, &peer(1001, 1001), &tenant("acme")), Ok(tenant("acme")));
        let e = scope_for(&a, &peer(1001, 1001), &Scope::Operator).unwrap_err();
        assert_eq!(e.reason, "wider_scope");
        assert!(e.message.contains("uid 1001 (alice) is a tenant admin, not an operator"), "{}", e.message);
        assert!(e.message.contains("--as-tenant acme"), "{}", e.message);
        let e = scope_for(&a, &peer(1001, 1001), &tenant("globex")).unwrap_err();
        assert_eq!(e.reason, "wider_scope");
        assert!(e.message.contains("not an admin of tenant `globex`"), "{}", e.message);
        assert_eq!(scope_for(&a, &peer(1002, 2001), &tenant("globex")), Ok(tenant("globex")));
        // Unknown peers and callers are refused.
        let e = scope_for(&a, &peer(4242, 4242), &tenant("acme")).unwrap_err();
        assert_eq!(e.reason, "unknown_peer");
        assert!(e.message.contains("uid 4242 (gid 4242) may not use this control socket"), "{}", e.message);
        assert_eq!(scope_for(&a, &Caller::Unknown, &tenant("acme")).unwrap_err().reason, "unknown_caller");
        // An API key's scope was set by the API front end.
        let key = Caller::ApiKey { name: "deploy".into() };
        assert_eq!(scope_for(&a, &key, &tenant("acme")), Ok(tenant("acme")));
        assert_eq!(actor(&a, &key), "key:deploy");
        assert_eq!(actor(&a, &peer(1001, 1001)), "peer:1001(alice)");
        assert_eq!(actor(&a, &peer(4242, 1)), "peer:4242");
    }
}
