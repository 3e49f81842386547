//! How the model's values are kept in a database column, for both backends: an
//! identifier or a status as TEXT, parsed again when it is read, so that a row decodes
//! straight into its model type (`#[derive(sqlx::FromRow)]`). A stored value that does
//! not parse is a decode error naming the value, never a panic.

use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

use super::{
    AuditOutcome, ChangeKind, ConnectionStatus, ContributionKind, ContributionStatus, EntityName, PresetName,
    ProviderId, Responsibility, RoleName, RunOutcome, RunTrigger, StreamName, TenantId, TriggerKind, UserId,
};

/// Kept as TEXT: `$parse` turns the stored text back into the value.
macro_rules! text_column {
    ($($ty:ty => $parse:expr),+ $(,)?) => {$(
        impl<DB: Database> Type<DB> for $ty
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&'r str as Decode<'r, DB>>::decode(value)?;
                $parse(text)
            }
        }
    )+};
}

/// An identifier's `parse`, its error boxed.
fn id<T, E: std::error::Error + Send + Sync + 'static>(
    parse: fn(&str) -> Result<T, E>,
    text: &str,
) -> Result<T, BoxDynError> {
    parse(text).map_err(Into::into)
}

/// A status word's `parse`; an unknown word is an error naming it.
fn word<T>(kind: &str, parse: fn(&str) -> Option<T>, text: &str) -> Result<T, BoxDynError> {
    parse(text).ok_or_else(|| format!("unknown {kind} `{text}`").into())
}

text_column!(
    AuditOutcome => |t| word("audit outcome", AuditOutcome::parse, t),
    TenantId => |t| id(TenantId::parse, t),
    ProviderId => |t| id(ProviderId::parse, t),
    StreamName => |t| id(StreamName::parse, t),
    EntityName => |t| id(EntityName::parse, t),
    PresetName => |t| id(PresetName::parse, t),
    UserId => |t| id(UserId::parse, t),
    RoleName => |t| id(RoleName::parse, t),
    ConnectionStatus => |t| word("connection status", ConnectionStatus::parse, t),
    RunTrigger => |t| word("run trigger", RunTrigger::parse, t),
    TriggerKind => |t| word("trigger kind", TriggerKind::parse, t),
    RunOutcome => |t| word("run outcome", RunOutcome::parse, t),
    ContributionKind => |t| word("contribution kind", ContributionKind::parse, t),
    ContributionStatus => |t| word("contribution status", ContributionStatus::parse, t),
    Responsibility => |t| word("responsibility", Responsibility::parse, t),
    ChangeKind => |t| word("change kind", ChangeKind::parse, t),
);

/// A connection's owning user as `connections.owner_user` keeps it: the empty text for
/// the company. Read with `#[sqlx(try_from = "OwnerColumn")]` into an `Option<UserId>`.
pub struct OwnerColumn(Option<UserId>);

text_column!(OwnerColumn => |t: &str| Ok(OwnerColumn(if t.is_empty() { None } else { Some(id(UserId::parse, t)?) })));

impl From<OwnerColumn> for Option<UserId> {
    fn from(column: OwnerColumn) -> Self {
        column.0
    }
}
