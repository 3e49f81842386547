//! Users, their memberships of companies (tenants) with a role, the streams each role
//! may sync at a company (`role_grants`), and user-owned connections: SQL shared by
//! both backends.
//!
//! A user connection carries its owner's role at the tenant (`connections.owner_role`),
//! kept in step with the membership in the same transaction: changing the role changes
//! it, removing the membership disables the user's connections there (records stay).

use std::collections::BTreeMap;

use sqlx::types::Json;

use super::error::{StoreError, db};
use super::intelligence::not_a_member;
use super::jobs::insert_audit;
use super::statement::{Bind, all, connection, optional};
use super::tenants::{SELECT_CONNECTION, no_connection};
use super::{Conn, Store};
use crate::model::{
    AuditEntry, ConnectionRow, MembershipRow, Owner, ProviderId, RoleName, Saved, TenantId, UserId, UserRow,
};

/// Why a user connection is `disabled` after its owner left the tenant. Connections
/// disabled for this reason come back when the user becomes a member again.
pub const NOT_A_MEMBER_REASON: &str = "the owner is no longer a member of the tenant";

/// Inserts a user (`$1` id, `$2` name, `$3` email, `$4` now) unless the id exists.
const INSERT_USER: &str = concat!(
    "INSERT INTO users (id, name, email, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
     ON CONFLICT (id) DO NOTHING RETURNING ",
    user_columns!()
);

/// Updates a user's name and email (binds as [`INSERT_USER`]) where they differ.
const UPDATE_USER: &str = concat!(
    "UPDATE users SET name = $2, email = $3, updated_at = $4 \
     WHERE id = $1 AND (name <> $2 OR email IS DISTINCT FROM $3) RETURNING ",
    user_columns!()
);

/// The user `$1`.
const SELECT_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");

/// The role of user `$2` at tenant `$1`.
pub(super) const ROLE_AT_TENANT: &str = "SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2";

/// A tenant's memberships (`$1`), by user.
const MEMBERSHIPS_OF_TENANT: &str =
    concat!("SELECT ", membership_columns!(), " FROM memberships WHERE tenant_id = $1 ORDER BY user_id");

/// A user's memberships (`$1`), by tenant.
const MEMBERSHIPS_OF_USER: &str =
    concat!("SELECT ", membership_columns!(), " FROM memberships WHERE user_id = $1 ORDER BY tenant_id");

pub(super) fn no_tenant(tenant: &TenantId) -> StoreError {
    StoreError::NotFound { what: format!("tenant `{tenant}` does not exist") }
}

fn no_user(user: &UserId) -> StoreError {
    StoreError::NotFound { what: format!("user `{user}` does not exist") }
}

/// Groups `memberships` (ordered by user) under each of `users`.
fn with_memberships(users: Vec<UserRow>, memberships: Vec<MembershipRow>) -> Result<Vec<UserRow>, StoreError> {
    let mut by_user: BTreeMap<UserId, Vec<MembershipRow>> = BTreeMap::new();
    for m in memberships {
        by_user.entry(m.user_id.clone()).or_default().push(m);
    }
    users
        .into_iter()
        .map(|user| {
            let memberships = by_user.remove(&user.id).unwrap_or_default();
            Ok(UserRow { memberships, ..user })
        })
        .collect()
}

impl Store {
    /// Adds user `user`, or updates their name and email if they differ; `audit` is
    /// written when something changed. Returns the user (with every membership) and what
    /// was done.
    pub async fn add_user(
        &self,
        user: &UserId,
        name: &str,
        email: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<(UserRow, Saved), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            // Inserted, else updated where it differs, else read as it is.
            let mut saved = None;
            let writes =
                [(INSERT_USER, "inserting a user", Saved::Created), (UPDATE_USER, "updating a user", Saved::Updated)];
            for (sql, context, done) in writes {
                let row: Option<UserRow> = sqlx::query_as(sql)
                    .bind_all((user.as_str(), name, email, now))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db(context))?;
                if let Some(row) = row {
                    saved = Some((row, done));
                    break;
                }
            }
            let (row, saved) = match saved {
                Some(saved) => saved,
                None => {
                    let row: UserRow = sqlx::query_as(SELECT_USER)
                        .bind(user.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db("reading a user"))?;
                    (row, Saved::Unchanged)
                }
            };
            let memberships = all(&mut *tx, MEMBERSHIPS_OF_USER, [user.as_str()], "reading memberships").await?;
            if saved != Saved::Unchanged {
                insert_audit(&mut *tx, audit).await?;
            }
            tx.commit().await.map_err(db("committing a user"))?;
            Ok((UserRow { memberships, ..row }, saved))
        })
    }

    /// The user with every membership, if they exist.
    pub async fn get_user(&self, user: &UserId) -> Result<Option<UserRow>, StoreError> {
        on_backend!(self, |s| {
            let mut conn = s.pool.acquire().await.map_err(db("acquiring a connection"))?;
            let row: Option<UserRow> = optional(&mut *conn, SELECT_USER, [user.as_str()], "reading a user").await?;
            let Some(row) = row else { return Ok(None) };
            let memberships = all(&mut *conn, MEMBERSHIPS_OF_USER, [user.as_str()], "reading memberships").await?;
            Ok(Some(UserRow { memberships, ..row }))
        })
    }

    /// Users by id: every user with every membership with `None`; with `Some(tenant)`,
    /// the tenant's members with only their membership of that tenant (a tenant's
    /// listing does not show the other companies its users belong to).
    pub async fn list_users(&self, tenant: Option<&TenantId>) -> Result<Vec<UserRow>, StoreError> {
        on_backend!(self, |s| {
            let mut conn = s.pool.acquire().await.map_err(db("acquiring a connection"))?;
            let (users, memberships) = match tenant {
                Some(tenant) => {
                    let users: Vec<UserRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        user_columns!(),
                        " FROM users WHERE id IN (SELECT user_id FROM memberships WHERE tenant_id = $1) \
                         ORDER BY id"
                    ))
                    .bind(tenant.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("listing users"))?;
                    (users, all(&mut *conn, MEMBERSHIPS_OF_TENANT, [tenant.as_str()], "reading memberships").await?)
                }
                None => {
                    let users: Vec<UserRow> =
                        sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users ORDER BY id"))
                            .fetch_all(&mut *conn)
                            .await
                            .map_err(db("listing users"))?;
                    let rows: Vec<MembershipRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        membership_columns!(),
                        " FROM memberships ORDER BY user_id, tenant_id"
                    ))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db("listing memberships"))?;
                    (users, rows)
                }
            };
            with_memberships(users, memberships)
        })
    }

    /// Makes `user` a member of the tenant with `role`, or changes their role there; in
    /// the same transaction, the `owner_role` of the user's connections at the tenant
    /// follows, and a returning member's connections that were disabled when they left
    /// come back (`connected` with credentials, else `pending`) where their provider is
    /// still enabled. Jobs are not touched: reconciliation adds or removes them for the
    /// new role. `audit` is written when something changed.
    ///
    /// [`StoreError::NotFound`] if the tenant or the user does not exist.
    pub async fn set_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        role: &RoleName,
        audit: &AuditEntry,
    ) -> Result<(MembershipRow, Saved), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            lock_tenant(&mut *tx, tenant).await?;
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(user.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a user"))?;
            if exists.is_none() {
                return Err(no_user(user));
            }
            let saved = match role_of(&mut *tx, tenant, user).await? {
                Some(current) if current == *role => Saved::Unchanged,
                Some(_) => {
                    sqlx::query(
                        "UPDATE memberships SET role = $1, updated_at = $2 WHERE tenant_id = $3 AND user_id = $4",
                    )
                    .bind_all((role.as_str(), now, tenant.as_str(), user.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("changing a role"))?;
                    Saved::Updated
                }
                None => {
                    sqlx::query(
                        "INSERT INTO memberships (tenant_id, user_id, role, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $4)",
                    )
                    .bind_all((tenant.as_str(), user.as_str(), role.as_str(), now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("inserting a membership"))?;
                    // A returning member's connections come back where their provider
                    // is still enabled (the company connection is not disabled).
                    sqlx::query(
                        "UPDATE connections SET status = CASE WHEN credentials IS NULL \
                         THEN 'pending' ELSE 'connected' END, status_reason = NULL, updated_at = $1 \
                         WHERE tenant_id = $2 AND owner_user = $3 AND status = 'disabled' \
                         AND status_reason = $4 AND EXISTS (SELECT 1 FROM connections c \
                         WHERE c.tenant_id = connections.tenant_id AND c.provider = connections.provider \
                         AND c.owner_user = '' AND c.status <> 'disabled')",
                    )
                    .bind_all((now, tenant.as_str(), user.as_str(), NOT_A_MEMBER_REASON))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("restoring a member's connections"))?;
                    Saved::Created
                }
            };
            if saved != Saved::Unchanged {
                sqlx::query(
                    "UPDATE connections SET owner_role = $1, updated_at = $2 \
                     WHERE tenant_id = $3 AND owner_user = $4",
                )
                .bind_all((role.as_str(), now, tenant.as_str(), user.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(db("updating the role of a user's connections"))?;
                super::reconcile::queue_reconcile(&mut *tx, tenant, &audit.action, now).await?;
                insert_audit(&mut *tx, audit).await?;
            }
            let row: MembershipRow = sqlx::query_as(concat!(
                "SELECT ",
                membership_columns!(),
                " FROM memberships WHERE tenant_id = $1 AND user_id = $2"
            ))
            .bind_all((tenant.as_str(), user.as_str()))
            .fetch_one(&mut *tx)
            .await
            .map_err(db("reading a membership"))?;
            tx.commit().await.map_err(db("committing a membership"))?;
            Ok((row, saved))
        })
    }

    /// Ends `user`'s membership of the tenant, in one transaction with `audit`: their
    /// connections there become `disabled` ([`NOT_A_MEMBER_REASON`]) with no role, and
    /// their jobs are disabled; records, cursors and credentials stay. Returns how many
    /// connections were disabled.
    ///
    /// [`StoreError::NotFound`] if the user is not a member of the tenant.
    pub async fn remove_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            lock_tenant(&mut *tx, tenant).await?;
            let removed = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind_all((tenant.as_str(), user.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(db("deleting a membership"))?;
            if removed.rows_affected() == 0 {
                return Err(not_a_member(tenant, user));
            }
            sqlx::query(
                "UPDATE jobs SET enabled = FALSE, updated_at = $1 WHERE tenant_id = $2 AND enabled \
                 AND connection_id IN (SELECT id FROM connections WHERE tenant_id = $2 AND owner_user = $3)",
            )
            .bind_all((now, tenant.as_str(), user.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db("disabling a user's jobs"))?;
            let disabled = sqlx::query(
                "UPDATE connections SET status = 'disabled', status_reason = $1, owner_role = NULL, \
                 updated_at = $2 WHERE tenant_id = $3 AND owner_user = $4",
            )
            .bind_all((NOT_A_MEMBER_REASON, now, tenant.as_str(), user.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db("disabling a user's connections"))?;
            super::reconcile::queue_reconcile(&mut *tx, tenant, &audit.action, now).await?;
            insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing a membership removal"))?;
            Ok(disabled.rows_affected())
        })
    }

    /// The tenant's memberships, by user.
    pub async fn memberships(&self, tenant: &TenantId) -> Result<Vec<MembershipRow>, StoreError> {
        on_backend!(self, |s| {
            let mut conn = s.pool.acquire().await.map_err(db("acquiring a connection"))?;
            all(&mut *conn, MEMBERSHIPS_OF_TENANT, [tenant.as_str()], "reading memberships").await
        })
    }

    /// The user's memberships, by tenant.
    pub async fn memberships_of(&self, user: &UserId) -> Result<Vec<MembershipRow>, StoreError> {
        on_backend!(self, |s| {
            let mut conn = s.pool.acquire().await.map_err(db("acquiring a connection"))?;
            all(&mut *conn, MEMBERSHIPS_OF_USER, [user.as_str()], "reading memberships").await
        })
    }

    /// Replaces the tenant's role grants (role → stream patterns `provider.stream`,
    /// `provider.*`, `*`; validated by the caller) and writes `audit`, in one
    /// transaction. A role without grants may sync nothing.
    ///
    /// [`StoreError::NotFound`] if the tenant does not exist.
    pub async fn put_role_grants(
        &self,
        tenant: &TenantId,
        grants: &BTreeMap<RoleName, Vec<String>>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            lock_tenant(&mut *tx, tenant).await?;
            sqlx::query("DELETE FROM role_grants WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("deleting role grants"))?;
            for (role, streams) in grants {
                sqlx::query("INSERT INTO role_grants (tenant_id, role, streams, updated_at) VALUES ($1, $2, $3, $4)")
                    .bind_all((tenant.as_str(), role.as_str(), Json(streams), now))
                    .execute(&mut *tx)
                    .await
                    .map_err(db("inserting role grants"))?;
            }
            super::reconcile::queue_reconcile(&mut *tx, tenant, &audit.action, now).await?;
            insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing role grants"))?;
            Ok(())
        })
    }

    /// The tenant's role grants, by role.
    pub async fn role_grants(&self, tenant: &TenantId) -> Result<BTreeMap<RoleName, Vec<String>>, StoreError> {
        on_backend!(self, |s| {
            let grants: Vec<(RoleName, Json<Vec<String>>)> =
                sqlx::query_as("SELECT role, streams FROM role_grants WHERE tenant_id = $1 ORDER BY role")
                    .bind(tenant.as_str())
                    .fetch_all(&s.pool)
                    .await
                    .map_err(db("reading role grants"))?;
            Ok(grants.into_iter().map(|(role, streams)| (role, streams.0)).collect())
        })
    }

    /// Creates `user`'s own connection to `provider` at the tenant (`pending` until
    /// credentials are stored, `owner_role` their role there, `schedule` its own schedule
    /// — validated by the caller — or `None` for the tenant's), or updates its schedule;
    /// `audit` is written when something changed.
    ///
    /// [`StoreError::NotFound`] if the tenant does not exist, the user is not a member of
    /// it, or the provider has no company connection there (it is not enabled);
    /// [`StoreError::Conflict`] if the provider is disabled at the tenant.
    pub async fn connect_user(
        &self,
        tenant: &TenantId,
        provider: &ProviderId,
        user: &UserId,
        schedule: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<(ConnectionRow, Saved), StoreError> {
        on_backend!(self, |s| {
            let (mut tx, now) = s.begin_write().await?;
            lock_tenant(&mut *tx, tenant).await?;
            let Some(role) = role_of(&mut *tx, tenant, user).await? else {
                return Err(not_a_member(tenant, user));
            };
            let company: Option<String> =
                sqlx::query_scalar(concat!("SELECT status FROM connections WHERE ", connection_key!()))
                    .bind_key(connection(tenant, provider, Owner::Company))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("reading a connection"))?;
            match company.as_deref() {
                None => return Err(no_connection(tenant, provider, Owner::Company)),
                Some("disabled") => {
                    return Err(StoreError::Conflict {
                        what: format!(
                            "provider `{provider}` is disabled at tenant `{tenant}`: \
                             its users cannot connect to it"
                        ),
                    });
                }
                Some(_) => {}
            }
            let key = connection(tenant, provider, Owner::User(user));
            let existing: Option<ConnectionRow> =
                optional(&mut *tx, SELECT_CONNECTION, key, "reading a connection").await?;
            let (row, saved) = match existing {
                Some(c) if c.schedule.as_deref() == schedule && c.owner_role.as_ref() == Some(&role) => {
                    tx.commit().await.map_err(db("committing a user connection"))?;
                    return Ok((c, Saved::Unchanged));
                }
                Some(c) => {
                    let row: ConnectionRow = sqlx::query_as(concat!(
                        "UPDATE connections SET schedule = $1, owner_role = $2, updated_at = $3 \
                         WHERE id = $4 RETURNING ",
                        connection_columns!()
                    ))
                    .bind_all((schedule, role.as_str(), now, c.id))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("updating a user connection"))?;
                    (row, Saved::Updated)
                }
                None => {
                    let row: ConnectionRow = sqlx::query_as(concat!(
                        "INSERT INTO connections (tenant_id, provider, owner_user, owner_role, status, \
                         schedule, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6) \
                         RETURNING ",
                        connection_columns!()
                    ))
                    .bind_key(key)
                    .bind_all((role.as_str(), schedule, now))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db("creating a user connection"))?;
                    (row, Saved::Created)
                }
            };
            super::reconcile::queue_reconcile(&mut *tx, tenant, &audit.action, now).await?;
            insert_audit(&mut *tx, audit).await?;
            tx.commit().await.map_err(db("committing a user connection"))?;
            Ok((row, saved))
        })
    }
}

/// Locks the tenant row (see `LOCK_TENANT`); [`StoreError::NotFound`] if the
/// tenant does not exist.
pub(super) async fn lock_tenant(conn: impl Into<Conn<'_>>, tenant: &TenantId) -> Result<(), StoreError> {
    on_connection!(conn, |conn: B| {
        let found: Option<String> = sqlx::query_scalar(B::LOCK_TENANT)
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("locking a tenant"))?;
        found.map(|_| ()).ok_or_else(|| no_tenant(tenant))
    })
}

/// The user's role at the tenant, if they are a member.
pub(super) async fn role_of(
    conn: impl Into<Conn<'_>>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<RoleName>, StoreError> {
    on_connection!(conn, |conn| {
        sqlx::query_scalar(ROLE_AT_TENANT)
            .bind_key([tenant.as_str(), user.as_str()])
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a membership"))
    })
}
