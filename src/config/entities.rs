//! Target entities: the normalized record kinds of the tenant schema (`config/entities.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::diag::{Diagnostics, join};
use super::source::{Source, take_table, typed};
use crate::model::{EntityName, FieldName};

/// The value type of a target field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Email,
    Integer,
    Number,
    Boolean,
    Date,
    Datetime,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    kind: FieldType,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    title: String,
    /// The field that identifies a record (default `external_id`).
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    description: Option<String>,
    fields: toml::Table,
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDef {
    pub name: FieldName,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub required: bool,
    pub description: Option<String>,
}

/// One target entity with its fields in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entity {
    pub name: EntityName,
    pub title: String,
    /// The required field whose value is the record's external id.
    pub key: FieldName,
    pub description: Option<String>,
    pub fields: Vec<FieldDef>,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    pub fn required_fields(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| f.required)
    }
}

/// All target entities.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Entities(BTreeMap<EntityName, Entity>);

impl Entities {
    pub fn get(&self, name: &str) -> Option<&Entity> {
        self.0.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entity> {
        self.0.values()
    }

    pub fn names(&self) -> String {
        self.0.keys().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Parses `entities.toml`: `[entities.<name>]` with `title` and `[entities.<name>.fields]`.
    pub fn load(source: &Source, diag: &mut Diagnostics) -> Self {
        let file = source.name.as_str();
        let Some(mut root) = source.parse(diag) else {
            return Self::default();
        };
        let entities = take_table(&mut root, "entities", diag, file, "");
        for key in root.keys() {
            diag.push(file, key, "unknown key (expected `entities`)");
        }
        let mut out = BTreeMap::new();
        for (name, value) in entities {
            let path = join("entities", &name);
            let id = match EntityName::parse(&name) {
                Ok(id) => id,
                Err(e) => {
                    diag.push(file, &path, e.to_string());
                    continue;
                }
            };
            let Some(raw) = typed::<RawEntity>(value, diag, file, &path) else {
                continue;
            };
            let mut fields = Vec::new();
            for (field, value) in raw.fields {
                let fpath = join(&join(&path, "fields"), &field);
                let name = FieldName::parse(&field).map_err(|e| diag.push(file, &fpath, e.to_string()));
                let def = typed::<RawField>(value, diag, file, &fpath);
                if let (Ok(name), Some(def)) = (name, def) {
                    fields.push(FieldDef {
                        name,
                        kind: def.kind,
                        required: def.required,
                        description: def.description,
                    });
                }
            }
            if fields.is_empty() {
                diag.push(file, &join(&path, "fields"), "an entity needs at least one field");
            }
            let key_name = raw.key.unwrap_or_else(|| "external_id".to_owned());
            let key = match fields.iter().find(|f| f.name.as_str() == key_name) {
                Some(f) if f.required => f.name.clone(),
                Some(_) => {
                    diag.push(file, &join(&path, "key"), format!("key field `{key_name}` must be required"));
                    continue;
                }
                None => {
                    diag.push(file, &join(&path, "key"), format!("key field `{key_name}` is not a field of `{name}`"));
                    continue;
                }
            };
            let entity = Entity { name: id.clone(), title: raw.title, key, description: raw.description, fields };
            out.insert(id, entity);
        }
        if out.is_empty() {
            diag.push(file, "entities", "no entities are declared");
        }
        Self(out)
    }
}
