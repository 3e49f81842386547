//! Tenant lifecycle: create with a preset, apply a tenant file, rebase onto the current
//! preset revision, switch preset. Each operation validates the resulting effective
//! configuration before anything is written, then writes tenant, overrides,
//! connection states and an audit entry in one store transaction.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Catalog, Change, Diagnostics, Effective, Preset, ProviderLayer, TenantSpec};
use crate::model::{AuditEntry, PresetName, ProviderId, RoleName, TenantId, TenantRow};
use crate::store::{Store, StoreError, TenantState};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant `{0}` not found")]
    NotFound(TenantId),
    #[error("tenant `{0}` already exists (use `tenant apply` to change it)")]
    Exists(TenantId),
    #[error("unknown preset `{name}` (known: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("the resulting configuration of tenant `{tenant}` is invalid:\n{diagnostics}")]
    Invalid { tenant: TenantId, diagnostics: Diagnostics },
    #[error("stored configuration of tenant `{tenant}` is unreadable: {reason}")]
    Corrupt { tenant: TenantId, reason: String },
    /// The tenant is defined by a file in `config/tenants/`, which `tenant apply` and the
    /// daemon's start and reload apply again: a change made only in the store would be undone.
    #[error(
        "tenant `{tenant}` is managed by the tenant file {file}, which names preset `{current}`: set \
         `preset = \"{wanted}\"` there and run `tributary tenant apply {file}` (or reload the daemon)"
    )]
    FileManaged { tenant: TenantId, file: String, current: PresetName, wanted: PresetName },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored tenant with its effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    pub tenant: TenantRow,
    pub overrides: BTreeMap<ProviderId, ProviderLayer>,
    pub effective: Effective,
    /// The preset's current revision (differs from the pinned one after edits).
    pub current_revision: Option<String>,
    /// Role → the stream patterns its users' own connections may sync.
    pub roles: BTreeMap<RoleName, Vec<String>>,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApplyOutcome {
    Created { revision: String },
    Updated { changes: Vec<Change> },
    Unchanged,
}

/// What `rebase` or `set-preset` changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rebased {
    pub from_preset: PresetName,
    pub from_revision: String,
    pub to_preset: PresetName,
    pub to_revision: String,
    pub changes: Vec<Change>,
    /// Providers whose connection was disabled (their records stay).
    pub disabled: Vec<ProviderId>,
    pub enabled: Vec<ProviderId>,
}

/// Tenant operations for one actor (recorded in the audit log).
pub struct Tenants<'a> {
    catalog: &'a Catalog,
    store: &'a Store,
    actor: String,
}

impl<'a> Tenants<'a> {
    pub fn new(catalog: &'a Catalog, store: &'a Store, actor: impl Into<String>) -> Self {
        Self { catalog, store, actor: actor.into() }
    }

    fn preset(&self, name: &str) -> Result<&'a Preset, TenantError> {
        self.catalog
            .presets
            .get(name)
            .ok_or_else(|| TenantError::UnknownPreset { name: name.to_owned(), known: self.catalog.presets.names() })
    }

    fn audit(&self, action: &str, tenant: &TenantId, subject: Option<String>, details: Value) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            actor: self.actor.clone(),
            scope: self.actor.starts_with("cli:").then(|| "local".into()),
            outcome: crate::model::AuditOutcome::Ok,
            message: None,
            action: action.to_owned(),
            tenant_id: Some(tenant.clone()),
            subject,
            details,
        }
    }

    /// Validates and builds the state to store for `spec` on `snapshot`.
    fn state(
        &self,
        spec: &TenantSpec,
        revision: &str,
        snapshot: &BTreeMap<ProviderId, ProviderLayer>,
    ) -> Result<(TenantState, Effective), TenantError> {
        let effective = Effective::compute(self.catalog, &spec.preset, revision, snapshot, &spec.overrides);
        let mut diag = Diagnostics::default();
        effective.check(self.catalog, &spec.subdomain, &mut diag, &format!("tenant {}", spec.id));
        if !diag.is_empty() {
            return Err(TenantError::Invalid { tenant: spec.id.clone(), diagnostics: diag });
        }
        let state = TenantState {
            id: spec.id.clone(),
            name: spec.name.clone(),
            subdomain: spec.subdomain.clone(),
            timezone: spec.timezone.clone(),
            preset: spec.preset.clone(),
            preset_revision: revision.to_owned(),
            preset_snapshot: serde_json::to_value(snapshot).unwrap_or(Value::Null),
            overrides: spec
                .overrides
                .iter()
                .filter(|(_, l)| **l != ProviderLayer::default())
                .map(|(p, l)| (p.clone(), serde_json::to_value(l).unwrap_or(Value::Null)))
                .collect(),
            enabled_providers: effective.enabled().map(|p| p.provider.clone()).collect(),
        };
        Ok((state, effective))
    }

    /// Creates a tenant pinned to the preset's current revision.
    pub async fn create(&self, spec: &TenantSpec) -> Result<String, TenantError> {
        let preset = self.preset(spec.preset.as_str())?;
        if self.store.get_tenant(&spec.id).await?.is_some() {
            return Err(TenantError::Exists(spec.id.clone()));
        }
        let (state, _) = self.state(spec, &preset.revision, &preset.resolved)?;
        let audit = self.audit(
            "tenant.create",
            &spec.id,
            None,
            json!({ "preset": spec.preset, "revision": preset.revision, "overrides": state.overrides.iter().map(|(p, _)| p).collect::<Vec<_>>() }),
        );
        self.store.create_tenant(&state, &audit).await.map_err(|e| match e {
            StoreError::Conflict { .. } => TenantError::Exists(spec.id.clone()),
            e => e.into(),
        })?;
        let roles = preset.roles_with(&spec.roles);
        if !roles.is_empty() {
            self.put_roles(&spec.id, &roles).await?;
        }
        Ok(preset.revision.clone())
    }

    /// Stores a tenant's role grants (its preset's with its own over them), replacing them.
    async fn put_roles(&self, id: &TenantId, roles: &BTreeMap<RoleName, Vec<String>>) -> Result<(), TenantError> {
        let audit = self.audit("roles.set", id, None, json!({ "roles": roles }));
        self.store.put_role_grants(id, roles, &audit).await?;
        Ok(())
    }

    /// Makes the stored tenant match `spec`: creates it, or updates name, subdomain,
    /// time zone and overrides (keeping its pinned revision unless the preset changes).
    /// Applying the same file twice changes nothing the second time.
    pub async fn apply(&self, spec: &TenantSpec) -> Result<ApplyOutcome, TenantError> {
        let Some(view) = self.view(&spec.id).await? else {
            return self.create(spec).await.map(|revision| ApplyOutcome::Created { revision });
        };
        let row = &view.tenant;
        let (revision, snapshot) = if row.preset == spec.preset {
            (row.preset_revision.clone(), snapshot_of(row)?)
        } else {
            let preset = self.preset(spec.preset.as_str())?;
            (preset.revision.clone(), preset.resolved.clone())
        };
        let roles = self.preset(spec.preset.as_str())?.roles_with(&spec.roles);
        let (state, effective) = self.state(spec, &revision, &snapshot)?;
        let mut changes = view.effective.diff(&effective);
        for (field, before, after) in [
            ("name", &row.name, &spec.name),
            ("subdomain", &row.subdomain, &spec.subdomain),
            ("timezone", &row.timezone, &spec.timezone),
            ("preset", &row.preset.to_string(), &spec.preset.to_string()),
        ] {
            if before != after {
                changes
                    .insert(0, Change { path: field.into(), before: Some(json!(before)), after: Some(json!(after)) });
            }
        }
        let role_changes = role_changes(&view.roles, &roles);
        changes.extend(role_changes.iter().cloned());
        let stored_overrides: Vec<(ProviderId, Value)> = view
            .overrides
            .iter()
            .filter(|(_, l)| **l != ProviderLayer::default())
            .map(|(p, l)| (p.clone(), serde_json::to_value(l).unwrap_or(Value::Null)))
            .collect();
        if changes.is_empty() && stored_overrides == state.overrides {
            return Ok(ApplyOutcome::Unchanged);
        }
        let audit = self.audit("tenant.apply", &spec.id, None, json!({ "changes": changes }));
        self.store.update_tenant(&state, &audit).await?;
        if !role_changes.is_empty() {
            self.put_roles(&spec.id, &roles).await?;
        }
        Ok(ApplyOutcome::Updated { changes })
    }

    /// Adopts the preset's current revision and reports what changed.
    pub async fn rebase(&self, id: &TenantId) -> Result<Rebased, TenantError> {
        let view = self.require(id).await?;
        let preset = view.tenant.preset.clone();
        self.switch(view, &preset, "tenant.rebase").await
    }

    /// Switches the tenant to another preset (at its current revision). Providers the new
    /// preset drops have their connections disabled; their records stay.
    pub async fn set_preset(&self, id: &TenantId, preset: &str) -> Result<Rebased, TenantError> {
        let view = self.require(id).await?;
        let preset = self.preset(preset)?.name.clone();
        // One source of truth: a file-managed tenant changes preset in its file.
        if let Some((file, spec)) = self.catalog.tenant_files.iter().find(|(_, spec)| spec.id == *id)
            && spec.preset != preset
        {
            return Err(TenantError::FileManaged {
                tenant: id.clone(),
                file: file.display().to_string(),
                current: spec.preset.clone(),
                wanted: preset,
            });
        }
        self.switch(view, &preset, "tenant.set_preset").await
    }

    async fn switch(&self, view: TenantView, to: &PresetName, action: &str) -> Result<Rebased, TenantError> {
        let preset = self.preset(to.as_str())?;
        let row = &view.tenant;
        let spec = TenantSpec {
            id: row.id.clone(),
            name: row.name.clone(),
            subdomain: row.subdomain.clone(),
            preset: preset.name.clone(),
            timezone: row.timezone.clone(),
            overrides: view.overrides.clone(),
            roles: view.roles.clone(),
        };
        let (state, effective) = self.state(&spec, &preset.revision, &preset.resolved)?;
        let was: Vec<ProviderId> = view.effective.enabled().map(|p| p.provider.clone()).collect();
        let now: Vec<ProviderId> = effective.enabled().map(|p| p.provider.clone()).collect();
        let result = Rebased {
            from_preset: row.preset.clone(),
            from_revision: row.preset_revision.clone(),
            to_preset: preset.name.clone(),
            to_revision: preset.revision.clone(),
            changes: view.effective.diff(&effective),
            disabled: was.iter().filter(|p| !now.contains(p)).cloned().collect(),
            enabled: now.iter().filter(|p| !was.contains(p)).cloned().collect(),
        };
        let audit = self.audit(
            action,
            &row.id,
            Some(preset.name.to_string()),
            serde_json::to_value(&result).unwrap_or(Value::Null),
        );
        self.store.update_tenant(&state, &audit).await?;
        // Grants the new preset adds for roles the tenant has none for.
        let roles = preset.roles_with(&view.roles);
        if roles != view.roles {
            self.put_roles(&row.id, &roles).await?;
        }
        Ok(result)
    }

    /// The stored tenant and its effective configuration.
    pub async fn view(&self, id: &TenantId) -> Result<Option<TenantView>, TenantError> {
        let Some(tenant) = self.store.get_tenant(id).await? else {
            return Ok(None);
        };
        let snapshot = snapshot_of(&tenant)?;
        let mut overrides = BTreeMap::new();
        for (p, v) in self.store.get_overrides(id).await? {
            let layer: ProviderLayer = serde_json::from_value(v)
                .map_err(|e| TenantError::Corrupt { tenant: id.clone(), reason: format!("overrides of `{p}`: {e}") })?;
            overrides.insert(p, layer);
        }
        let effective =
            Effective::compute(self.catalog, &tenant.preset, &tenant.preset_revision, &snapshot, &overrides);
        let current_revision = self.catalog.presets.get(tenant.preset.as_str()).map(|p| p.revision.clone());
        let roles = self.store.role_grants(id).await?;
        Ok(Some(TenantView { tenant, overrides, effective, current_revision, roles }))
    }

    pub async fn require(&self, id: &TenantId) -> Result<TenantView, TenantError> {
        self.view(id).await?.ok_or_else(|| TenantError::NotFound(id.clone()))
    }
}

/// One change per role whose grants differ (`roles.<role>.streams`).
fn role_changes(before: &BTreeMap<RoleName, Vec<String>>, after: &BTreeMap<RoleName, Vec<String>>) -> Vec<Change> {
    let roles: std::collections::BTreeSet<&RoleName> = before.keys().chain(after.keys()).collect();
    roles
        .into_iter()
        .filter(|role| before.get(*role) != after.get(*role))
        .map(|role| Change {
            path: format!("roles.{role}.streams"),
            before: before.get(role).map(|s| json!(s)),
            after: after.get(role).map(|s| json!(s)),
        })
        .collect()
}

fn snapshot_of(row: &TenantRow) -> Result<BTreeMap<ProviderId, ProviderLayer>, TenantError> {
    serde_json::from_value(row.preset_snapshot.clone())
        .map_err(|e| TenantError::Corrupt { tenant: row.id.clone(), reason: format!("preset snapshot: {e}") })
}
