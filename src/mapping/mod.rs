//! Field mapping: turns one raw provider record into one record of a target entity.
//!
//! A mapping is compiled once per run — source paths into segment vectors, transform
//! names into steps, constants folded, filters checked against the entity — and then
//! applied to every record. [`CompiledMapping::apply`] parses nothing, clones nothing of
//! the record beyond the values it outputs, and allocates only the output.
//!
//! For each field of the entity, in declaration order:
//! 1. the source: one path (`MappingSpec::Path`, or a rule's `from`), several paths
//!    merged by `concat`/`coalesce`, or a constant `value`; a missing path is null;
//! 2. the rule's `transform`s in order (those listed before `concat`/`coalesce` apply
//!    to each source, those after to the merged value);
//! 3. `map`: the value's string form is looked up, a hit replaces it;
//! 4. `default` when the value is null;
//! 5. a check against the field's type (numbers and booleans become strings for
//!    `string` fields); a null required field dead-letters the record.
//!
//! Fields mapped to `false`, and fields the mapping does not mention, are not produced.
//! Tags follow the fields as constant strings. Source filters run on the raw record
//! before mapping, field filters on the mapped values after.
//!
//! Dead-letter reasons go to logs, so they name the field, the source and the problem
//! (a transform and the value's JSON type) but never the value: records hold personal
//! data.

mod dates;
mod filters;
mod plan;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod transforms;
mod types;
mod value;
mod write;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{Entity, FieldType, FilterSpec, MappingSpec, TRANSFORMS};
use crate::model::EntityName;
use filters::{Filter, Target};
use plan::{Plan, compile_plan};
use types::{conform, expected};
use value::{View, text, type_name};
pub use write::{
    CompiledWrite, PreparedRequest, ReverseMapping, Reversed, WriteError, WriteResult, build_request, http_date,
    is_newer, normalized_version, provider_error, text_of, value_at, version_target, write_result,
};

/// The mapping of one provider's records into one target entity, ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    entity: EntityName,
    fields: Vec<Field>,
    /// Index into `fields` of the entity's key field.
    key: usize,
    tags: Vec<(String, Value)>,
    source_filters: Vec<Filter>,
    field_filters: Vec<Filter>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum MapResult {
    /// The record mapped cleanly.
    Mapped(MappedRecord),
    /// A filter dropped the record.
    Filtered {
        /// The name of the filter that dropped it.
        filter: String,
    },
    /// The record cannot be mapped and belongs in the dead-letter log.
    DeadLetter {
        /// Which field, source and transform or type failed; never the value itself.
        reason: String,
    },
}

/// A record of the target entity.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRecord {
    /// The string form of the entity's key field.
    pub external_id: String,
    /// An object: the produced entity fields in declaration order, then the tags.
    pub data: Value,
}

/// Why a mapping cannot be compiled. Every variant names the entity and the field,
/// tag or filter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A mapping targets a field the entity does not declare.
    #[error("mapping of `{entity}`: unknown field `{field}` (known: {known})")]
    UnknownField { entity: EntityName, field: String, known: String },
    /// A mapping names a transform that does not exist.
    #[error("mapping of `{entity}.{field}`: unknown transform `{transform}` (known: {})", TRANSFORMS.join(", "))]
    UnknownTransform { entity: EntityName, field: String, transform: String },
    /// A mapping rule that cannot work: a malformed path, several sources without
    /// `concat`/`coalesce`, both `from` and `value`, a constant a transform rejects….
    #[error("mapping of `{entity}.{field}`: {reason}")]
    InvalidRule { entity: EntityName, field: String, reason: String },
    /// A tag has the name of one of the entity's fields.
    #[error("tag `{tag}` of `{entity}` has the same name as a field of the entity")]
    TagShadowsField { entity: EntityName, tag: String },
    /// A filter tests a field the entity does not declare.
    #[error("filter `{filter}` of `{entity}`: unknown field `{field}`")]
    FilterUnknownField { entity: EntityName, filter: String, field: String },
    /// A filter that cannot work: no or two targets, a missing or malformed value, a
    /// field that is not mapped.
    #[error("filter `{filter}` of `{entity}`: {reason}")]
    InvalidFilter { entity: EntityName, filter: String, reason: String },
    /// The entity's key is not one of its fields.
    #[error("entity `{entity}`: key `{key}` is not one of its fields")]
    UnknownKey { entity: EntityName, key: String },
    /// Several of the above, all reported at once.
    #[error("{} problems in the mapping of `{entity}`: {}", .errors.len(), list(.errors))]
    Several { entity: EntityName, errors: Vec<MappingError> },
}

fn list(errors: &[MappingError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// One entity field and how it is filled.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    /// `entity.field`, for messages.
    label: String,
    kind: FieldType,
    required: bool,
    /// `None` when the field is not produced.
    plan: Option<Plan>,
}

impl CompiledMapping {
    /// Compiles `fields` (target field → mapping) for `entity`, with the `filters` whose
    /// `entity` is this one and that are not switched off, and the constant `tags`.
    /// Every problem is reported, at once.
    pub fn compile(
        entity: &Entity,
        fields: &BTreeMap<String, MappingSpec>,
        filters: &BTreeMap<String, FilterSpec>,
        tags: &BTreeMap<String, String>,
    ) -> Result<Self, MappingError> {
        let name = &entity.name;
        let mut errors = Vec::new();
        for field in fields.keys() {
            if entity.field(field).is_none() {
                errors.push(MappingError::UnknownField {
                    entity: name.clone(),
                    field: field.clone(),
                    known: entity.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
        let mut compiled = Vec::with_capacity(entity.fields.len());
        for def in &entity.fields {
            let plan = match fields.get(def.name.as_str()) {
                None | Some(MappingSpec::Off) => None,
                Some(spec) => compile_plan(spec, name, def.name.as_str()).map_err(|e| errors.push(e)).ok(),
            };
            let field = Field {
                name: def.name.to_string(),
                label: format!("{name}.{}", def.name),
                kind: def.kind,
                required: def.required,
                plan,
            };
            // A constant that does not fit its field would dead-letter every record.
            if field.plan.as_ref().is_some_and(Plan::is_constant)
                && let Err(reason) = field.produce(&Value::Null)
            {
                errors.push(MappingError::InvalidRule {
                    entity: name.clone(),
                    field: field.name.clone(),
                    reason: format!("the constant cannot be used: {reason}"),
                });
            }
            compiled.push(field);
        }
        let key = entity.fields.iter().position(|f| f.name == entity.key);
        if key.is_none() {
            errors.push(MappingError::UnknownKey { entity: name.clone(), key: entity.key.to_string() });
        }
        let mut constant_tags = Vec::with_capacity(tags.len());
        for (tag, value) in tags {
            if entity.field(tag).is_some() {
                errors.push(MappingError::TagShadowsField { entity: name.clone(), tag: tag.clone() });
            }
            constant_tags.push((tag.clone(), Value::String(value.clone())));
        }
        let (mut source_filters, mut field_filters) = (Vec::new(), Vec::new());
        let applicable = filters.iter().filter(|(_, f)| f.entity == name.as_str() && f.enabled != Some(false));
        for (filter_name, spec) in applicable {
            let invalid =
                |reason| MappingError::InvalidFilter { entity: name.clone(), filter: filter_name.clone(), reason };
            let filter = match Filter::compile(filter_name, spec) {
                Ok(f) => f,
                Err(reason) => {
                    errors.push(invalid(reason));
                    continue;
                }
            };
            let Target::Field(field) = &filter.target else {
                source_filters.push(filter);
                continue;
            };
            match compiled.iter().find(|f| f.name == *field) {
                None => errors.push(MappingError::FilterUnknownField {
                    entity: name.clone(),
                    filter: filter_name.clone(),
                    field: field.clone(),
                }),
                Some(f) if f.plan.is_none() => errors
                    .push(invalid(format!("field `{field}` is not mapped, so the filter would never see a value"))),
                Some(_) => field_filters.push(filter),
            }
        }
        match (errors.len(), key) {
            (0, Some(key)) => Ok(Self {
                entity: name.clone(),
                fields: compiled,
                key,
                tags: constant_tags,
                source_filters,
                field_filters,
            }),
            (1, _) => Err(errors.remove(0)),
            _ => Err(MappingError::Several { entity: name.clone(), errors }),
        }
    }

    /// The target entity this mapping produces.
    pub fn entity(&self) -> &EntityName {
        &self.entity
    }

    /// Every path into the raw record that [`Self::apply`] reads (the fields' sources
    /// and the source filters), each as its steps: object keys, or array indexes
    /// written as numbers. Everything else of a record may be left out.
    pub fn source_paths(&self) -> Vec<Vec<&str>> {
        let fields = self.fields.iter().filter_map(|f| f.plan.as_ref()).flat_map(|p| p.paths());
        let filters = self.source_filters.iter().filter_map(|f| match &f.target {
            Target::Source(path) => Some(path),
            Target::Field(_) => None,
        });
        fields.chain(filters).map(|p| p.segments().collect()).collect()
    }

    /// The key (external id) of a record the provider says was deleted: only the key
    /// field is produced (a deletion item carries little else). Never panics.
    pub fn key_of(&self, record: &Value) -> Result<String, String> {
        if !record.is_object() {
            let kind = type_name(View::of(record));
            return Err(format!("the `{}` deletion item is {} {kind}, not an object", self.entity, article(kind)));
        }
        let key = &self.fields[self.key];
        match key.produce(record)? {
            Some(value) => text(View::of(&value))
                .ok_or_else(|| format!("key field `{}` has no string form (expected a string or number)", key.label)),
            None => Err(format!("key field `{}` is missing", key.label)),
        }
    }

    /// Maps one raw record (a JSON object). Never panics, whatever the record holds.
    pub fn apply(&self, record: &Value) -> MapResult {
        if !record.is_object() {
            let kind = type_name(View::of(record));
            return dead(format!("the `{}` record is {} {kind}, not an object", self.entity, article(kind)));
        }
        for filter in &self.source_filters {
            if let Target::Source(path) = &filter.target
                && !filter.keeps(path.lookup(record))
            {
                return filtered(filter);
            }
        }
        let mut data = Map::with_capacity(self.fields.len() + self.tags.len());
        let mut external_id = None;
        let mut failure = None;
        for (i, field) in self.fields.iter().enumerate() {
            match field.produce(record) {
                Ok(None) => {}
                Ok(Some(value)) => {
                    if i == self.key {
                        external_id = text(View::of(&value));
                    }
                    data.insert(field.name.clone(), value);
                }
                Err(reason) if self.field_filters.is_empty() => return dead(reason),
                Err(reason) => {
                    failure.get_or_insert(reason);
                }
            }
        }
        // A field that failed is absent; its filter cannot decide and the failure stands.
        for filter in &self.field_filters {
            if let Target::Field(name) = &filter.target
                && data.get(name).is_some_and(|v| !filter.keeps(Some(v)))
            {
                return filtered(filter);
            }
        }
        if let Some(reason) = failure {
            return dead(reason);
        }
        let Some(external_id) = external_id else {
            let key = &self.fields[self.key];
            return dead(format!("key field `{}` has no string form (expected a string or number)", key.label));
        };
        for (tag, value) in &self.tags {
            data.insert(tag.clone(), value.clone());
        }
        MapResult::Mapped(MappedRecord { external_id, data: Value::Object(data) })
    }
}

fn dead(reason: String) -> MapResult {
    MapResult::DeadLetter { reason }
}

fn filtered(filter: &Filter) -> MapResult {
    MapResult::Filtered { filter: filter.name.clone() }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

impl Field {
    /// The field's checked value; `None` when the field is not produced.
    fn produce(&self, record: &Value) -> Result<Option<Value>, String> {
        let label = &self.label;
        let Some(plan) = &self.plan else {
            return if self.required {
                Err(format!("required field `{label}` is missing (not mapped)"))
            } else {
                Ok(None)
            };
        };
        let v = plan.produce(record).map_err(|f| {
            format!(
                "transform `{}` cannot convert {} {} for `{label}` (source `{}`)",
                f.transform,
                article(f.json_type),
                f.json_type,
                f.source
            )
        })?;
        if v.is_null() {
            return if self.required {
                Err(format!("required field `{label}` is missing (source `{}`)", plan.source))
            } else {
                Ok(Some(Value::Null))
            };
        }
        let kind = type_name(v.view());
        conform(self.kind, v.into_value()).map(Some).ok_or_else(|| {
            format!(
                "field `{label}` expects {} but got {} {kind} (source `{}`)",
                expected(self.kind),
                article(kind),
                plan.source
            )
        })
    }
}
