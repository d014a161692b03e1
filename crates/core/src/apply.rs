//! The plan of `tempora apply`: which jobs of a set of job files are created, updated (and which
//! fields change), left alone or deleted, and every reason the set cannot be applied — decided
//! before anything is written, so the server applies a set whole or not at all.
//!
//! Rules:
//! - a job the files do not mark as paused or running (`paused` left out) keeps the pause state
//!   it has on the server: an operator's pause survives a re-apply; a new job starts unpaused;
//! - a job that exists without the `managed-by: tempora-apply` label was not made by `apply`:
//!   it is taken over only with `adopt`;
//! - parents must be in the files or on the server (and not pruned), and the jobs of the files
//!   with the server's other jobs must form no cycle;
//! - with `prune`, managed jobs that are not in the files are deleted;
//! - secret values are never shown: a changed secret is shown as `secrets.NAME: changed`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::job::JobSpec;

/// Label key that marks jobs managed by `apply`.
pub const MANAGED_KEY: &str = "managed-by";
/// Its value.
pub const MANAGED_VALUE: &str = "tempora-apply";

/// What happens to one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new job.
    Create,
    /// An existing job changes.
    Update,
    /// Nothing to do.
    Unchanged,
    /// Pruned.
    Delete,
}

/// One field that changes: its path and both values as shown (secrets hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// `command`, `labels.team`, `secrets.TOKEN`, …
    pub field: String,
    /// Before (None: not set).
    pub from: Option<Value>,
    /// After (None: removed).
    pub to: Option<Value>,
}

/// One job's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// The job.
    pub job: String,
    /// What happens to it.
    pub action: Action,
    /// For an update: what changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// The plan: the changes, and the specs to write (parents before children).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every job of the files, then the pruned ones.
    pub changes: Vec<Change>,
    /// Jobs to create or update, as they are to be stored.
    pub puts: Vec<JobSpec>,
    /// Jobs to delete.
    pub deletes: Vec<String>,
}

/// What the files ask for.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The jobs of the files (validated, with the managed label).
    pub jobs: Vec<JobSpec>,
    /// Names of the jobs whose file sets `paused` (true or false) explicitly.
    pub paused_given: BTreeSet<String>,
    /// Delete managed jobs that are not in the files.
    pub prune: bool,
    /// Take over existing jobs not made by `apply`.
    pub adopt: bool,
}

/// Plan `desired` against the server's jobs (`current`, by name). Errors: every reason the set
/// cannot be applied.
pub fn plan(desired: &Desired, current: &BTreeMap<String, JobSpec>) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let in_files: BTreeSet<&str> = desired.jobs.iter().map(|j| j.name.as_str()).collect();
    let managed =
        |j: &JobSpec| j.labels.get(MANAGED_KEY).map(String::as_str) == Some(MANAGED_VALUE);
    let deletes: Vec<String> = if desired.prune {
        current
            .values()
            .filter(|j| managed(j) && !in_files.contains(j.name.as_str()))
            .map(|j| j.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    let mut plan = Plan::default();
    let mut puts = Vec::new();
    for want in &desired.jobs {
        let mut spec = want.clone();
        spec.labels
            .insert(MANAGED_KEY.to_owned(), MANAGED_VALUE.to_owned());
        let Some(have) = current.get(&spec.name) else {
            plan.changes.push(Change {
                job: spec.name.clone(),
                action: Action::Create,
                fields: Vec::new(),
            });
            puts.push(spec);
            continue;
        };
        if !managed(have) && !desired.adopt {
            problems.push(format!(
                "job `{}`: exists on the server and was not made by apply (no label {MANAGED_KEY}: \
                 {MANAGED_VALUE}); pass --adopt to take it over",
                spec.name
            ));
            continue;
        }
        if !desired.paused_given.contains(&spec.name) {
            spec.paused = have.paused;
        }
        let fields = diff(have, &spec);
        if fields.is_empty() {
            plan.changes.push(Change {
                job: spec.name.clone(),
                action: Action::Unchanged,
                fields,
            });
        } else {
            plan.changes.push(Change {
                job: spec.name.clone(),
                action: Action::Update,
                fields,
            });
            puts.push(spec);
        }
    }
    // Parents, and cycles of the files' jobs with the server's others (as they will be).
    let mut graph: BTreeMap<String, Vec<String>> = current
        .values()
        .filter(|j| !deletes.contains(&j.name))
        .map(|j| (j.name.clone(), j.parents.clone()))
        .collect();
    for j in &desired.jobs {
        graph.insert(j.name.clone(), j.parents.clone());
    }
    for j in &desired.jobs {
        for p in &j.parents {
            if !graph.contains_key(p) {
                let why = if deletes.contains(p) {
                    "it is pruned (managed, and not in the files)"
                } else {
                    "neither in the files nor on the server"
                };
                problems.push(format!(
                    "job `{}`: parents: unknown parent job `{p}` ({why})",
                    j.name
                ));
            }
        }
    }
    if let Some(cycle) = crate::dag::find_cycle(&graph) {
        problems.push(format!(
            "parents: the jobs would form a cycle: {}",
            cycle.join(" → ")
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for d in &deletes {
        plan.changes.push(Change {
            job: d.clone(),
            action: Action::Delete,
            fields: Vec::new(),
        });
    }
    plan.puts = parents_first(puts);
    plan.deletes = deletes;
    Ok(plan)
}

/// Parents before children; the rest keeps its order.
fn parents_first(jobs: Vec<JobSpec>) -> Vec<JobSpec> {
    let names: BTreeSet<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut rest = jobs;
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let before = rest.len();
        let (ready, wait): (Vec<_>, Vec<_>) = rest.into_iter().partition(|j| {
            j.parents
                .iter()
                .all(|p| !names.contains(p) || done.contains(p))
        });
        for j in ready {
            done.insert(j.name.clone());
            out.push(j);
        }
        rest = wait;
        if rest.len() == before {
            // A cycle, refused by [`plan`] before this.
            out.append(&mut rest);
        }
    }
    out
}

/// The fields that differ between the stored job and the wanted one (secret values hidden:
/// a wanted `***` keeps the stored value).
pub fn diff(have: &JobSpec, want: &JobSpec) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(have), serde_json::to_value(want))
    else {
        return out;
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        match k.as_str() {
            "secrets" => {
                let names: BTreeSet<&String> =
                    have.secrets.keys().chain(want.secrets.keys()).collect();
                for n in names {
                    let change = match (have.secrets.get(n), want.secrets.get(n)) {
                        (Some(_), Some(v)) if v == crate::secret::MASK => None,
                        (Some(_), Some(_)) => Some((Some("***"), Some("*** (a new value)"))),
                        (None, Some(_)) => Some((None, Some("***"))),
                        (Some(_), None) => Some((Some("***"), None)),
                        (None, None) => None,
                    };
                    if let Some((from, to)) = change {
                        out.push(FieldChange {
                            field: format!("secrets.{n}"),
                            from: from.map(Value::from),
                            to: to.map(Value::from),
                        });
                    }
                }
            }
            "labels" | "env" | "selector" | "chronos" => {
                let empty = serde_json::Map::new();
                let xa = x.and_then(Value::as_object).unwrap_or(&empty);
                let yb = y.and_then(Value::as_object).unwrap_or(&empty);
                let names: BTreeSet<&String> = xa.keys().chain(yb.keys()).collect();
                for n in names {
                    if xa.get(n) != yb.get(n) {
                        out.push(FieldChange {
                            field: format!("{k}.{n}"),
                            from: xa.get(n).cloned(),
                            to: yb.get(n).cloned(),
                        });
                    }
                }
            }
            _ => {
                // A field left out of the JSON holds its default: `false`, `[]`.
                let shown = |v: Option<&Value>, other: Option<&Value>| match (v, other) {
                    (None, Some(Value::Bool(_))) => Some(Value::Bool(false)),
                    (None, Some(Value::Array(_))) => Some(Value::Array(Vec::new())),
                    (v, _) => v.cloned(),
                };
                out.push(FieldChange {
                    field: k.clone(),
                    from: shown(x, y),
                    to: shown(y, x),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(json: &str) -> JobSpec {
        serde_json::from_str(json).unwrap()
    }

    fn current(jobs: &[&str]) -> BTreeMap<String, JobSpec> {
        jobs.iter()
            .map(|j| {
                let j = job(j);
                (j.name.clone(), j)
            })
            .collect()
    }

    #[test]
    fn creates_updates_keeps_pause_and_prunes() {
        let server = current(&[
            r#"{"name":"a","command":"old","paused":true,"labels":{"managed-by":"tempora-apply"}}"#,
            r#"{"name":"b","command":"same","labels":{"managed-by":"tempora-apply"}}"#,
            r#"{"name":"gone","command":"x","labels":{"managed-by":"tempora-apply"}}"#,
            r#"{"name":"hand","command":"x"}"#,
        ]);
        let desired = Desired {
            jobs: vec![
                job(r#"{"name":"a","command":"new"}"#),
                job(r#"{"name":"b","command":"same"}"#),
                job(r#"{"name":"c","command":"x","parents":["a"]}"#),
            ],
            prune: true,
            ..Desired::default()
        };
        let p = plan(&desired, &server).unwrap();
        let actions: Vec<(&str, &Action)> = p
            .changes
            .iter()
            .map(|c| (c.job.as_str(), &c.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("a", &Action::Update),
                ("b", &Action::Unchanged),
                ("c", &Action::Create),
                ("gone", &Action::Delete)
            ]
        );
        assert_eq!(
            p.changes[0].fields,
            [FieldChange {
                field: "command".into(),
                from: Some("old".into()),
                to: Some("new".into())
            }]
        );
        // The operator's pause stays (the file does not say), unless the file says.
        assert!(p.puts.iter().find(|j| j.name == "a").unwrap().paused);
        let mut again = desired.clone();
        again.paused_given.insert("a".into());
        let p = plan(&again, &server).unwrap();
        assert!(!p.puts.iter().find(|j| j.name == "a").unwrap().paused);
        assert_eq!(p.changes[0].fields.len(), 2, "{:?}", p.changes[0].fields);
        assert_eq!(p.deletes, ["gone"]);
    }

    #[test]
    fn refuses_takeover_cycles_and_missing_parents_all_at_once() {
        let server = current(&[
            r#"{"name":"hand","command":"x"}"#,
            r#"{"name":"p","command":"x","parents":["q"],"labels":{"managed-by":"tempora-apply"}}"#,
            r#"{"name":"q","command":"x","labels":{"managed-by":"tempora-apply"}}"#,
        ]);
        let desired = Desired {
            jobs: vec![
                job(r#"{"name":"hand","command":"y"}"#),
                job(r#"{"name":"q","command":"x","parents":["p"]}"#),
                job(r#"{"name":"r","command":"x","parents":["nowhere"]}"#),
            ],
            ..Desired::default()
        };
        let problems = plan(&desired, &server).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("--adopt"), "{problems:?}");
        assert!(problems[1].contains("`nowhere`"), "{problems:?}");
        assert!(problems[2].contains("cycle"), "{problems:?}");
        let adopt = Desired {
            jobs: vec![job(r#"{"name":"hand","command":"y"}"#)],
            adopt: true,
            ..Desired::default()
        };
        let p = plan(&adopt, &server).unwrap();
        let fields: Vec<&str> = p.changes[0]
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["command", "labels.managed-by"]);
    }

    #[test]
    fn secrets_are_never_shown() {
        let have = job(
            r#"{"name":"s","command":"x","secrets":{"A":"sealed:v1:k:aaa","B":"sealed:v1:k:bbb","C":"sealed:v1:k:ccc"}}"#,
        );
        let want = job(
            r#"{"name":"s","command":"x","secrets":{"A":"***","B":"plain-new","D":"plain-d"}}"#,
        );
        let d = diff(&have, &want);
        let text = serde_json::to_string(&d).unwrap();
        assert!(
            !text.contains("plain") && !text.contains("sealed"),
            "{text}"
        );
        let fields: Vec<&str> = d.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["secrets.B", "secrets.C", "secrets.D"]);
    }
}
