//! `keys generate|rotate|status`, and finding the master key for every command that
//! seals or opens (`Global::master_key`).
//!
//! Rotation: `keys rotate --new-key-file F` registers F's key in the store by id with
//! F's path (never the key), then re-encrypts every sealed value under it in batches.
//! Every process that shares the store (daemons, `sync`, `credentials set`) reads F
//! from that path once it sees the registration (the daemon on its housekeeping tick,
//! and before it seals or when it meets a value under a key it does not hold), seals
//! only with it from then on, and keeps its configured key for opening what is not
//! re-encrypted yet. An interrupted rotation resumes where it stopped when run again.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::json;

use super::Global;
use super::output::{self, outln};
use crate::config::Catalog;
use crate::secrets::{KeyOrigin, MasterKey};
use crate::store::{SealedCount, SealedKind, Store};

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Write a new random master key to a file (created 0600, never over an existing
    /// file) and print its key id.
    Generate {
        /// The key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Re-encrypt every sealed value (credentials, tokens, webhook signing secrets)
    /// under the key in FILE, in batches, while daemons keep running; run it again to
    /// resume after an interruption.
    Rotate {
        /// The new key's file (32 raw bytes or 64 hex digits, mode 0600 or 0400), at a
        /// path every host that shares the store can read.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
        /// Values re-encrypted per transaction.
        #[arg(long, default_value_t = 200, value_name = "N")]
        batch_size: usize,
        /// Pause between batches, to spread the load on a busy store.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        pause_ms: u64,
    },
    /// How many sealed values remain under each key id, and the rotation under way.
    Status,
    /// Remove every value sealed with a lost key: its credentials (their connections
    /// become `pending`: set them again), tokens, and the webhook endpoints whose
    /// signing secret it sealed. Without --yes, only lists what would go.
    Forget {
        /// The lost key's id (`keys status` lists them).
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// Remove them (otherwise a dry run).
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(g: &Global, cmd: KeysCmd) -> anyhow::Result<ExitCode> {
    if let KeysCmd::Generate { out } = &cmd {
        let key = MasterKey::generate_file(out)?;
        if g.json {
            output::json(&json!({ "key_id": key.id(), "file": out }))?;
        } else {
            outln!("wrote master key {} to {} (mode 0600)", key.id(), out.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = g.catalog()?;
    let store = g.store_existing(&catalog).await?;
    let result = match cmd {
        KeysCmd::Generate { .. } => Ok(ExitCode::SUCCESS),
        KeysCmd::Rotate { new_key_file, batch_size, pause_ms } => {
            rotate(g, &catalog, &store, &new_key_file, batch_size, Duration::from_millis(pause_ms)).await
        }
        KeysCmd::Status => status(g, &store).await,
        KeysCmd::Forget { key_id, yes } => forget(g, &store, &key_id, yes).await,
    };
    store.close().await;
    result
}

async fn rotate(
    g: &Global,
    catalog: &Catalog,
    store: &Store,
    file: &std::path::Path,
    batch: usize,
    pause: Duration,
) -> anyhow::Result<ExitCode> {
    if batch == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let key = g.master_key(catalog, store).await?;
    let new = MasterKey::read(file)?;
    let path = std::fs::canonicalize(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let path_text =
        path.to_str().ok_or_else(|| anyhow::anyhow!("the key file path {} is not UTF-8", path.display()))?;
    let new_id = new.id();
    let registered = store.register_key_rotation(&new_id, path_text).await?;
    key.adopt(new);
    tracing::info!(key_id = %new_id, key_file = %path.display(), "rotating to master key {new_id}");
    let mut rewrapped = 0;
    let finished = loop {
        let progress = store
            .rotate_keys(&key, batch, |p| {
                tracing::debug!(rewrapped = p.rewrapped, batches = p.batches, "re-encrypted a batch");
                if pause.is_zero() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
            })
            .await?;
        rewrapped += progress.rewrapped;
        if progress.finished {
            break true;
        }
        if progress.batches == 0 {
            break false;
        }
        tokio::time::sleep(pause).await;
    };
    let counts = store.sealed_key_counts().await?;
    let remaining: i64 = counts.iter().filter(|c| c.key_id != new_id).map(|c| c.count).sum();
    // The key ids and the file's path only: never a key.
    let entry = crate::model::AuditEntry {
        scope: Some(super::LOCAL_SCOPE.into()),
        subject: Some(new_id.clone()),
        details: json!({ "key_file": path_text, "rewrapped": rewrapped, "finished": finished, "remaining": remaining }),
        ..crate::model::AuditEntry::new(super::actor(), "keys.rotate")
    };
    if let Err(e) = store.audit(entry).await {
        tracing::warn!("writing the audit entry failed: {e}");
    }
    if g.json {
        output::json(&json!({
            "key_id": new_id,
            "key_file": path,
            "started_at": registered.started_at,
            "rewrapped": rewrapped,
            "finished": finished,
            "remaining_under_other_keys": remaining,
        }))?;
    } else {
        outln!("re-encrypted {rewrapped} sealed values under master key {new_id}");
        if finished {
            outln!("no sealed value remains under another key id: the rotation is finished");
            outln!(
                "next: point TRIBUTARY_MASTER_KEY_FILE (or [secrets] master_key_file) at {} before the next restart, \
                 then retire the old key",
                path.display()
            );
        } else {
            outln!("{remaining} sealed values remain under other key ids: run `tributary keys rotate` again");
        }
    }
    Ok(if finished { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn status(g: &Global, store: &Store) -> anyhow::Result<ExitCode> {
    let rotation = store.key_rotation().await?;
    let counts = store.sealed_key_counts().await?;
    let by_key = per_key(&counts);
    if g.json {
        let keys: Vec<_> = by_key
            .iter()
            .map(|(id, c)| {
                json!({ "key_id": id, "credentials": c[0], "tokens": c[1], "webhook_secrets": c[2],
                        "total": c.iter().sum::<i64>() })
            })
            .collect();
        output::json(&json!({ "rotation": rotation, "keys": keys }))?;
        return Ok(ExitCode::SUCCESS);
    }
    match &rotation {
        Some(r) => {
            let state = match r.finished_at {
                Some(at) => format!("finished {}", at.to_rfc3339()),
                None => "under way".to_owned(),
            };
            outln!(
                "rotation to {} (key file {}): started {}, {state}, {} values re-encrypted",
                r.key_id,
                r.key_file,
                r.started_at.to_rfc3339(),
                r.rewrapped
            );
        }
        None => outln!("no key rotation registered"),
    }
    let rows: Vec<Vec<String>> = by_key
        .iter()
        .map(|(id, c)| {
            let role = match &rotation {
                Some(r) if &r.key_id == id => "sealing key",
                Some(_) => "to re-encrypt",
                None => "",
            };
            vec![
                id.clone(),
                c[0].to_string(),
                c[1].to_string(),
                c[2].to_string(),
                c.iter().sum::<i64>().to_string(),
                role.to_owned(),
            ]
        })
        .collect();
    output::table(&["KEY ID", "CREDENTIALS", "TOKENS", "WEBHOOK SECRETS", "TOTAL", ""], &rows);
    Ok(ExitCode::SUCCESS)
}

async fn forget(g: &Global, store: &Store, key_id: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let audit = crate::model::AuditEntry {
        scope: Some(super::LOCAL_SCOPE.into()),
        subject: Some(key_id.to_owned()),
        details: json!({ "key_id": key_id }),
        ..crate::model::AuditEntry::new(super::actor(), "keys.forget")
    };
    let gone = store.forget_key(key_id, yes, &audit).await?;
    if g.json {
        output::json(&json!({ "applied": yes, "forgotten": gone }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if yes { "removed" } else { "would remove" };
    outln!(
        "{verb} under key {key_id}: {} credentials, {} tokens, {} webhook endpoints",
        gone.credentials.len(),
        gone.tokens,
        gone.webhook_endpoints.len()
    );
    for c in &gone.credentials {
        outln!("  credentials {c}");
    }
    for e in &gone.webhook_endpoints {
        outln!("  webhook endpoint {e}");
    }
    if !yes {
        outln!("run again with --yes to remove them");
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts by key id: credentials, tokens, webhook secrets.
fn per_key(counts: &[SealedCount]) -> BTreeMap<String, [i64; 3]> {
    let mut by_key: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for c in counts {
        let slot = match c.kind {
            SealedKind::Credentials => 0,
            SealedKind::Token => 1,
            SealedKind::WebhookSecret => 2,
        };
        by_key.entry(c.key_id.clone()).or_default()[slot] += c.count;
    }
    by_key
}

/// See [`Global::master_key`]: an error when the store holds sealed values and the
/// loaded keys open none of them; a warning naming the key ids it cannot open when they
/// open some.
pub(super) async fn master_key(catalog: &Catalog, store: &Store) -> anyhow::Result<MasterKey> {
    let configured = std::env::var_os("TRIBUTARY_MASTER_KEY_FILE")
        .map(PathBuf::from)
        .or_else(|| catalog.settings.secrets.master_key_file.clone());
    let systemd = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let state_dir = store
        .sqlite_path()
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let counts = store.sealed_key_counts().await?;
    let by_key = per_key(&counts);
    let listed = |ids: &mut dyn Iterator<Item = (&String, &[i64; 3])>| {
        ids.map(|(id, c)| format!("`{id}` ({} values)", c.iter().sum::<i64>())).collect::<Vec<_>>().join(", ")
    };
    let (key, origin) = match MasterKey::find(configured.as_deref(), systemd.as_deref(), &state_dir) {
        Some(found) => found?,
        None if by_key.is_empty() => MasterKey::locate(None, None, &state_dir)?,
        None => anyhow::bail!(
            "the store holds values sealed with master key {}, but no master key file was found \
             (TRIBUTARY_MASTER_KEY_FILE, [secrets] master_key_file, $CREDENTIALS_DIRECTORY/master-key or {}); \
             a new key would open none of them, so none is generated: point TRIBUTARY_MASTER_KEY_FILE at the key \
             file with that id",
            listed(&mut by_key.iter()),
            state_dir.join(crate::secrets::KEY_FILE_NAME).display()
        ),
    };
    match origin {
        KeyOrigin::Generated(ref p) => tracing::warn!(
            path = %p.display(),
            key_id = key.id(),
            "generated a new master key; back it up — without it stored credentials cannot be decrypted"
        ),
        ref o => tracing::debug!(key_id = key.id(), "master key from {o}"),
    }
    store.follow_key_rotation(&key).await?;
    let held = by_key.keys().filter(|id| key.holds(id)).count();
    let mut missing = by_key.iter().filter(|(id, _)| !key.holds(id)).peekable();
    if missing.peek().is_some() {
        let message = format!(
            "the store holds values sealed with master key {}, which the loaded key ({}, from {origin}) cannot open: \
             point TRIBUTARY_MASTER_KEY_FILE at the key file with that id (`tributary keys status` lists the \
             key ids)",
            listed(&mut missing),
            key.ids().join(", ")
        );
        // A key that opens none of the store's values is the wrong key; one that opens
        // some leaves the others failing one by one, each naming its key id.
        if held == 0 {
            anyhow::bail!(message);
        }
        tracing::warn!("{message}");
    }
    Ok(key)
}
