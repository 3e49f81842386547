//! `[control]`: who may use the control socket, and as what. The daemon reads each
//! peer's uid and gid from the socket (`SO_PEERCRED`) and maps them through this section
//! to the widest scope the peer may have: operator, or admin of some tenants.
//!
//! Users and groups are given by number or by name; names are resolved through
//! `/etc/passwd` and `/etc/group` when the configuration is loaded (start-up, reload,
//! `config check`), so a name that does not resolve is a configuration error, and a
//! change of group membership takes effect at the next reload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diag::Diagnostics;
use crate::model::TenantId;

/// `[control]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    /// Users (names or uids) with the operator scope. Unset: the daemon's own user and
    /// root. Set, it replaces that default.
    pub operators: Option<Vec<Principal>>,
    /// Groups (names or gids) whose members are operators.
    pub operator_groups: Vec<Principal>,
    /// The control socket's file mode, octal (`"0600"`: only the daemon's user can
    /// connect; `"0660"` or `"0666"` let the other users named here reach it — the peer
    /// mapping decides what each may do).
    pub socket_mode: Option<String>,
    /// Tenant admins, per tenant: `[control.tenants.acme] admins = ["alice"]`.
    pub tenants: BTreeMap<String, TenantAdmins>,
}

/// `[control.tenants.<id>]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantAdmins {
    /// Users (names or uids) who are this tenant's admins.
    pub admins: Vec<Principal>,
    /// Groups (names or gids) whose members are this tenant's admins.
    pub admin_groups: Vec<Principal>,
}

/// A user or group: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Principal {
    Id(u32),
    Name(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(name) => write!(f, "`{name}`"),
        }
    }
}

/// The system's users and groups (what `/etc/passwd` and `/etc/group` say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    /// name, uid, primary gid.
    pub users: Vec<(String, u32, u32)>,
    /// name, gid, member names.
    pub groups: Vec<(String, u32, Vec<String>)>,
}

impl Accounts {
    /// `/etc/passwd` and `/etc/group`; a missing file reads as empty.
    pub fn system() -> Self {
        let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
        Self::parse(&read("/etc/passwd"), &read("/etc/group"))
    }

    /// Parses the two files' text; lines that are not entries are skipped.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let members = f.get(3).map(|m| m.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect());
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members.unwrap_or_default()))
            })
            .collect();
        Self { users, groups }
    }

    /// A user's name, by uid.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users.iter().find(|u| u.1 == uid).map(|u| u.0.as_str())
    }

    fn uid(&self, p: &Principal) -> Option<u32> {
        match p {
            Principal::Id(id) => Some(*id),
            Principal::Name(name) => self.users.iter().find(|u| u.0 == *name).map(|u| u.1),
        }
    }

    /// A group's gid and the uids of its members (listed in the group, or with it as
    /// their primary group).
    fn group(&self, p: &Principal) -> Option<(u32, BTreeSet<u32>)> {
        let gid = match p {
            Principal::Id(id) => *id,
            Principal::Name(name) => self.groups.iter().find(|g| g.0 == *name)?.1,
        };
        let mut members: BTreeSet<u32> = self.users.iter().filter(|u| u.2 == gid).map(|u| u.1).collect();
        for (_, _, names) in self.groups.iter().filter(|g| g.1 == gid) {
            members.extend(names.iter().filter_map(|n| self.uid(&Principal::Name(n.clone()))));
        }
        Some((gid, members))
    }
}

/// Who holds one scope, by number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    pub uids: BTreeSet<u32>,
    /// A peer whose (primary) gid is one of these.
    pub gids: BTreeSet<u32>,
}

impl Holders {
    pub fn contains(&self, uid: u32, gid: u32) -> bool {
        self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// `[control]` resolved to numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlAccess {
    pub operators: Holders,
    pub tenant_admins: BTreeMap<String, Holders>,
    /// uid → name, for the audit log.
    pub names: BTreeMap<u32, String>,
}

impl ControlSettings {
    /// Resolves names against `accounts`; `daemon_uid` is an operator unless `operators`
    /// is set. Every name that does not resolve, and every bad tenant id or mode, is an
    /// error `(key, message)`.
    pub fn resolve(&self, accounts: &Accounts, daemon_uid: u32) -> Result<ControlAccess, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let users = |key: &str, list: &[Principal], into: &mut Holders, errors: &mut Vec<(String, String)>| {
            for p in list {
                match accounts.uid(p) {
                    Some(uid) => {
                        into.uids.insert(uid);
                    }
                    None => errors.push((
                        key.to_owned(),
                        format!("no user {p} in /etc/passwd (give the uid as a number instead)"),
                    )),
                }
            }
        };
        let groups = |key: &str, list: &[Principal], into: &mut Holders, errors: &mut Vec<(String, String)>| {
            for p in list {
                match accounts.group(p) {
                    Some((gid, members)) => {
                        into.gids.insert(gid);
                        into.uids.extend(members);
                    }
                    None => errors.push((
                        key.to_owned(),
                        format!("no group {p} in /etc/group (give the gid as a number instead)"),
                    )),
                }
            }
        };
        let mut operators = Holders::default();
        match &self.operators {
            None => {
                operators.uids.extend([daemon_uid, 0]);
            }
            Some(list) => users("control.operators", list, &mut operators, &mut errors),
        }
        groups("control.operator_groups", &self.operator_groups, &mut operators, &mut errors);
        let mut tenant_admins = BTreeMap::new();
        for (tenant, admins) in &self.tenants {
            let key = format!("control.tenants.{tenant}");
            if let Err(e) = TenantId::parse(tenant) {
                errors.push((key.clone(), e.to_string()));
            }
            let mut holders = Holders::default();
            users(&format!("{key}.admins"), &admins.admins, &mut holders, &mut errors);
            groups(&format!("{key}.admin_groups"), &admins.admin_groups, &mut holders, &mut errors);
            tenant_admins.insert(tenant.clone(), holders);
        }
        if let Err(e) = self.mode() {
            errors.push(("control.socket_mode".into(), e));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let names = accounts.users.iter().map(|(name, uid, _)| (*uid, name.clone())).collect();
        Ok(ControlAccess { operators, tenant_admins, names })
    }

    /// The socket's file mode (default 0600).
    pub fn mode(&self) -> Result<u32, String> {
        let Some(text) = &self.socket_mode else { return Ok(0o600) };
        match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => Ok(mode),
            Ok(_) => Err(format!("`{text}` must be a file mode from 0600 to 0777 that the daemon's user can use")),
            Err(_) => Err(format!("`{text}` is not an octal file mode such as \"0660\"")),
        }
    }

    /// Reports what [`Self::resolve`] would refuse on this system.
    pub(super) fn check(&self, file: &str, diag: &mut Diagnostics) {
        if let Err(errors) = self.resolve(&Accounts::system(), 0) {
            for (key, message) in errors {
                diag.push(file, &key, message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\n\
                          bob:x:1002:100::/home/bob:/bin/sh\ncarol:x:1003:1003::/home/carol:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:\nops:x:2000:carol\nacme-admins:x:2001:alice,nobody-here\n";

    fn settings(text: &str) -> ControlSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn names_and_groups_resolve_to_numbers() {
        let accounts = Accounts::parse(PASSWD, GROUP);
        let access = settings(
            "operator_groups = [\"ops\"]\n[tenants.acme]\nadmins = [\"bob\", 4242]\nadmin_groups = [\"acme-admins\", 100]\n",
        )
        .resolve(&accounts, 999)
        .unwrap();
        // Unset operators: the daemon's own user and root, plus the group's members.
        assert_eq!(access.operators.uids, BTreeSet::from([0, 999, 1003]));
        assert_eq!(access.operators.gids, BTreeSet::from([2000]));
        let acme = &access.tenant_admins["acme"];
        // bob by name, 4242 by number, alice through acme-admins, bob again through gid 100.
        assert_eq!(acme.uids, BTreeSet::from([1001, 1002, 4242]));
        assert_eq!(acme.gids, BTreeSet::from([100, 2001]));
        assert!(acme.contains(5555, 2001) && !acme.contains(5555, 2002));
        assert_eq!(access.names.get(&1001).map(String::as_str), Some("alice"));
        // Set operators replace the default.
        let access = settings("operators = [\"alice\"]\n").resolve(&accounts, 999).unwrap();
        assert_eq!(access.operators.uids, BTreeSet::from([1001]));
    }

    #[test]
    fn what_does_not_resolve_is_an_error_naming_its_key() {
        let accounts = Accounts::parse(PASSWD, GROUP);
        let errors = settings(
            "operators = [\"mallory\"]\noperator_groups = [\"wheel\"]\nsocket_mode = \"0644x\"\n\
             [tenants.\"Bad Id\"]\nadmins = [1]\n",
        )
        .resolve(&accounts, 0)
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        let text = text.join("\n");
        assert!(text.contains("control.operators: no user `mallory` in /etc/passwd"), "{text}");
        assert!(text.contains("control.operator_groups: no group `wheel` in /etc/group"), "{text}");
        assert!(text.contains("control.tenants.Bad Id: "), "{text}");
        assert!(text.contains("control.socket_mode: `0644x` is not an octal file mode"), "{text}");
        assert_eq!(settings("socket_mode = \"0660\"").mode(), Ok(0o660));
        assert!(settings("socket_mode = \"0066\"").mode().is_err());
        assert_eq!(ControlSettings::default().mode(), Ok(0o600));
        // A typo in a key is refused by the parser.
        assert!(toml::from_str::<ControlSettings>("operator = [1]").is_err());
    }
}
