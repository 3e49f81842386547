//! How one field is filled: its source, transforms, value map and default, compiled
//! once and evaluated per record.

use std::collections::BTreeMap;

use serde_json::Value;

use super::MappingError;
use super::transforms::{Combiner, Concat, Step, Transform};
use super::value::{NULL, Val, with_text};
use crate::config::SourcePath;
use crate::config::{MappingRule, MappingSpec};
use crate::model::EntityName;

/// The compiled form of a field's `MappingSpec` (other than `false`).
#[derive(Debug, Clone)]
pub(super) struct Plan {
    input: Input,
    /// Transforms of the (merged) source value.
    post: Vec<Transform>,
    map: BTreeMap<String, Value>,
    default: Option<Value>,
    /// The source as configured, for messages.
    pub(super) source: String,
}

#[derive(Debug, Clone)]
enum Input {
    /// Already transformed, mapped and defaulted at compile time.
    Constant(Value),
    One(SourcePath),
    Many {
        paths: Vec<SourcePath>,
        /// Transforms of each source value before the merge.
        pre: Vec<Transform>,
        combiner: Combiner,
        separator: String,
    },
}

/// A transform that could not convert a present value.
pub(super) struct Failure<'a> {
    pub(super) source: &'a str,
    pub(super) transform: &'static str,
    pub(super) json_type: &'static str,
}

impl Plan {
    /// Whether the value is the same for every record.
    pub(super) fn is_constant(&self) -> bool {
        matches!(self.input, Input::Constant(_))
    }

    /// The paths into the record this plan reads.
    pub(super) fn paths(&self) -> &[SourcePath] {
        match &self.input {
            Input::Constant(_) => &[],
            Input::One(path) => std::slice::from_ref(path),
            Input::Many { paths, .. } => paths,
        }
    }

    /// The field's value for `record`, before the type check.
    pub(super) fn produce<'a>(&'a self, record: &'a Value) -> Result<Val<'a>, Failure<'a>> {
        let merged = match &self.input {
            Input::Constant(c) => return Ok(Val::Ref(c)),
            Input::One(path) => lookup(path, record),
            Input::Many { paths, pre, combiner: Combiner::Coalesce, .. } => {
                let mut first = NULL;
                for path in paths {
                    let v = run(pre, lookup(path, record), path.as_str())?;
                    if !v.is_null() {
                        first = v;
                        break;
                    }
                }
                first
            }
            Input::Many { paths, pre, combiner: Combiner::Concat, separator } => {
                let mut joined = Concat::default();
                for path in paths {
                    let v = run(pre, lookup(path, record), path.as_str())?;
                    joined.push(v, separator).map_err(|json_type| Failure {
                        source: path.as_str(),
                        transform: Combiner::Concat.name(),
                        json_type,
                    })?;
                }
                joined.finish()
            }
        };
        let v = run(&self.post, merged, &self.source)?;
        Ok(self.finish(v))
    }

    /// `map`, then `default`.
    fn finish<'a>(&'a self, v: Val<'a>) -> Val<'a> {
        let hit = if self.map.is_empty() { None } else { with_text(v.view(), |t| self.map.get(t)).flatten() };
        let v = hit.map_or(v, Val::Ref);
        match &self.default {
            Some(d) if v.is_null() => Val::Ref(d),
            _ => v,
        }
    }
}

fn lookup<'a>(path: &SourcePath, record: &'a Value) -> Val<'a> {
    path.lookup(record).map_or(NULL, Val::Ref)
}

fn run<'a>(steps: &[Transform], mut v: Val<'a>, source: &'a str) -> Result<Val<'a>, Failure<'a>> {
    for t in steps {
        v = t.apply(v).map_err(|json_type| Failure { source, transform: t.name(), json_type })?;
    }
    Ok(v)
}

/// Compiles one field's mapping; `entity` and `field` name it in errors.
pub(super) fn compile_plan(spec: &MappingSpec, entity: &EntityName, field: &str) -> Result<Plan, MappingError> {
    let invalid =
        |reason: String| MappingError::InvalidRule { entity: entity.clone(), field: field.to_owned(), reason };
    let path = |p: &str| SourcePath::compile(p).map_err(|e| invalid(format!("bad source path `{p}`: {e}")));
    let rule = match spec {
        MappingSpec::Rule(rule) => rule,
        MappingSpec::Path(p) => {
            return Ok(Plan {
                input: Input::One(path(p)?),
                post: Vec::new(),
                map: BTreeMap::new(),
                default: None,
                source: p.clone(),
            });
        }
        MappingSpec::Off => return Err(invalid("an unmapped field has no plan".into())),
    };
    let mut steps = Vec::with_capacity(rule.transform.len());
    for name in &rule.transform {
        steps.push(Step::parse(name).ok_or_else(|| MappingError::UnknownTransform {
            entity: entity.clone(),
            field: field.to_owned(),
            transform: name.clone(),
        })?);
    }
    let at = steps.iter().enumerate().find_map(|(i, s)| match s {
        Step::Combine(c) => Some((i, *c)),
        Step::One(_) => None,
    });
    let combiners = steps.iter().filter(|s| matches!(s, Step::Combine(_))).count();
    if combiners > 1 {
        return Err(invalid("use only one of `concat` and `coalesce`".into()));
    }
    let one = |steps: &[Step]| -> Vec<Transform> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::One(t) => Some(*t),
                Step::Combine(_) => None,
            })
            .collect()
    };
    let separator = rule.separator.clone().unwrap_or_else(|| " ".to_owned());
    let mut plan = Plan {
        input: Input::Constant(Value::Null),
        post: Vec::new(),
        map: rule.map.clone(),
        default: rule.default.clone(),
        source: String::new(),
    };
    match (&rule.from, &rule.value) {
        (Some(_), Some(_)) => {
            return Err(invalid("give either `from` or `value`, not both".into()));
        }
        (None, None) if rule.default.is_none() => {
            return Err(invalid("a mapping table needs `from`, `value` or `default`".into()));
        }
        (None, constant) => {
            let constant = constant.clone().unwrap_or(Value::Null);
            return fold_constant(rule, &steps, &separator, constant).map_err(invalid);
        }
        (Some(from), None) => {
            let sources = from.paths();
            plan.source = sources.join(", ");
            let mut paths = Vec::with_capacity(sources.len());
            for p in sources {
                paths.push(path(p)?);
            }
            match (at, paths.len()) {
                (None, 1) => {
                    plan.input = Input::One(paths.remove(0));
                    plan.post = one(&steps);
                }
                (None, _) => {
                    return Err(invalid("several sources in `from` need `concat` or `coalesce`".into()));
                }
                (Some((at, combiner)), _) => {
                    plan.input = Input::Many { paths, pre: one(&steps[..at]), combiner, separator };
                    plan.post = one(&steps[at + 1..]);
                }
            }
        }
    }
    Ok(plan)
}

/// A constant source is transformed, mapped and defaulted once, here.
fn fold_constant(rule: &MappingRule, steps: &[Step], separator: &str, constant: Value) -> Result<Plan, String> {
    let mut plan = Plan {
        input: Input::Constant(Value::Null),
        post: Vec::new(),
        map: rule.map.clone(),
        default: rule.default.clone(),
        source: "constant".into(),
    };
    let reject = |name: &str, json_type: &str| format!("transform `{name}` cannot convert the constant {json_type}");
    let mut v = Val::Ref(&constant);
    for step in steps {
        v = match step {
            Step::One(t) => t.apply(v).map_err(|ty| reject(t.name(), ty))?,
            Step::Combine(Combiner::Coalesce) => v,
            Step::Combine(Combiner::Concat) => {
                let mut joined = Concat::default();
                joined.push(v, separator).map_err(|ty| reject("concat", ty))?;
                joined.finish()
            }
        };
    }
    let folded = plan.finish(v).into_value();
    plan.input = Input::Constant(folded);
    plan.map.clear();
    plan.default = None;
    Ok(plan)
}
