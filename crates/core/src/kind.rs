//! What kind of work a job's run is (a command, an HTTP request, a container), and the
//! capabilities workers advertise: a worker claims only runs of the kinds it can run.
//!
//! Capabilities travel to the store as reserved labels (`tempora.io/<kind>: "yes"`): a job's
//! effective selector is its own `selector` plus the label of its kind, and a worker's claim
//! labels are its own labels plus one label per capability. So the one selector match the claim
//! already does also keeps container jobs away from workers without Docker.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, ValidationError};

/// Label keys under this prefix are tempora's own (capabilities); users may not set them.
pub const RESERVED_PREFIX: &str = "tempora.io/";

/// The kind of a job, which is also the capability a worker needs to run it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A process on the worker's host (`command`).
    Command,
    /// One HTTP request (`http`).
    Http,
    /// A container through the Docker Engine API (`container`).
    Container,
}

impl Kind {
    /// Every kind, in the order capabilities are listed.
    pub const ALL: [Kind; 3] = [Kind::Command, Kind::Http, Kind::Container];

    /// The kind's name (`command`, `http`, `container`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Http => "http",
            Kind::Container => "container",
        }
    }

    /// The reserved label that stands for this capability in claims and effective selectors.
    pub fn label(self) -> String {
        format!("{RESERVED_PREFIX}{}", self.as_str())
    }

    /// The kind named `name`, or an error listing the known ones.
    pub fn parse(name: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == name.trim())
            .ok_or_else(|| format!("unknown capability `{name}` (known: command, http, container)"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse a comma-separated capability list (`command,http,container`); empty entries are
/// skipped, duplicates kept once.
pub fn parse_capabilities(text: &str) -> Result<Vec<Kind>, String> {
    let mut out: Vec<Kind> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let k = Kind::parse(part)?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out.sort();
    Ok(out)
}

/// The labels a worker claims with: its own plus one reserved label per capability.
pub fn claim_labels(labels: &BTreeMap<String, String>, caps: &[Kind]) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for k in caps {
        out.insert(k.label(), "yes".to_owned());
    }
    out
}

/// Split stored claim labels back into the worker's own labels and its capabilities.
pub fn split_claim_labels(
    stored: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<Kind>) {
    let mut caps = Vec::new();
    let mut labels = BTreeMap::new();
    for (k, v) in stored {
        match k.strip_prefix(RESERVED_PREFIX).map(Kind::parse) {
            Some(Ok(kind)) => caps.push(kind),
            Some(Err(_)) => {}
            None => {
                labels.insert(k, v);
            }
        }
    }
    caps.sort();
    (labels, caps)
}

/// Refuse user labels under the reserved prefix (field `<field>.<key>`).
pub fn check_not_reserved(
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    match labels.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
        Some(k) => Err(ValidationError::new(
            format!("{field}.{k}"),
            "invalid_value",
            format!(
                "label keys under `{RESERVED_PREFIX}` are tempora's own (a worker's capabilities \
                 are given with --capabilities; a job's kind follows from its fields)"
            ),
        )),
        None => Ok(()),
    }
}

impl JobSpec {
    /// What kind of work a run of this job is.
    pub fn kind(&self) -> Kind {
        if self.container.is_some() {
            Kind::Container
        } else if self.http.is_some() {
            Kind::Http
        } else {
            Kind::Command
        }
    }

    /// The labels a worker must have to claim this job's runs: its `selector` plus its kind's
    /// capability label.
    pub fn effective_selector(&self) -> BTreeMap<String, String> {
        let mut s = self.selector.clone();
        s.insert(self.kind().label(), "yes".to_owned());
        s
    }
}

/// An artifact reference: `sha256:` and 64 lowercase hex digits; returns the digits.
pub fn artifact_digest(reference: &str) -> Option<&str> {
    let hex = reference.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// The kind-specific checks of a job: one kind per job, and no field that the kind ignores.
pub(crate) fn check_kind(spec: &JobSpec) -> Result<(), ValidationError> {
    let bad = |field: &str, m: &str| Err(ValidationError::new(field, "invalid_value", m));
    if let Some(a) = &spec.artifact {
        if artifact_digest(a).is_none() {
            return bad(
                "artifact",
                "`sha256:` and 64 lowercase hex digits (as `POST /api/v1/artifacts` answers)",
            );
        }
        if spec.http.is_some() || spec.container.is_some() {
            return bad(
                "artifact",
                "an artifact runs as a process: not with `http` or `container`",
            );
        }
        if !spec.command.trim().is_empty() {
            return bad(
                "command",
                "a job runs either a `command` or an `artifact`, not both",
            );
        }
    }
    if let Some(i) = &spec.interpreter {
        if spec.artifact.is_none() {
            return bad("interpreter", "an interpreter runs an `artifact`; give one");
        }
        let words: Vec<&str> = i.split_whitespace().collect();
        if words.is_empty() || words.len() > 16 || i.len() > 1024 || i.contains('\0') {
            return bad("interpreter", "1 to 16 words, at most 1024 bytes");
        }
    }
    if spec.artifact.is_some() {
        return Ok(());
    }
    match (&spec.http, &spec.container) {
        (Some(_), Some(_)) => {
            return bad(
                "container",
                "a job is one kind: a command, an HTTP request (`http`) or a container \
                 (`container`), not two",
            );
        }
        (Some(http), None) => {
            if !spec.command.trim().is_empty() {
                return bad(
                    "http",
                    "a job is either a command or an HTTP request (`http`), not both",
                );
            }
            if spec.run_as.is_some() || !spec.arguments.is_empty() || spec.workdir.is_some() {
                return bad(
                    "http",
                    "an HTTP job starts no process: `run_as`, `arguments` and `workdir` do not apply",
                );
            }
            http.validate()?;
        }
        (None, Some(c)) => {
            if spec.run_as.is_some() {
                return bad(
                    "run_as",
                    "a container job runs as `container.user` inside its container; `run_as` \
                     does not apply",
                );
            }
            c.validate()?;
        }
        (None, None) => {
            if spec.command.trim().is_empty() {
                return Err(ValidationError::new(
                    "command",
                    "missing_field",
                    "command is required (or `http` for an HTTP job, `container` for a container job, `artifact` for an uploaded script)",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_and_round_trip_through_labels() {
        assert_eq!(
            parse_capabilities("container, command,command").unwrap(),
            vec![Kind::Command, Kind::Container]
        );
        assert!(
            parse_capabilities("gpu")
                .unwrap_err()
                .contains("unknown capability `gpu`")
        );
        let mut own = BTreeMap::new();
        own.insert("zone".to_owned(), "a".to_owned());
        let claim = claim_labels(&own, &[Kind::Command, Kind::Container]);
        assert_eq!(
            claim.get("tempora.io/container").map(String::as_str),
            Some("yes")
        );
        assert_eq!(
            split_claim_labels(claim),
            (own.clone(), vec![Kind::Command, Kind::Container])
        );
        assert!(check_not_reserved("labels", &own).is_ok());
        let mut spoof = own;
        spoof.insert("tempora.io/container".into(), "yes".into());
        assert_eq!(
            check_not_reserved("labels", &spoof).unwrap_err().field,
            "labels.tempora.io/container"
        );
    }

    #[test]
    fn a_job_is_one_kind() {
        let job = |j: serde_json::Value| -> JobSpec { serde_json::from_value(j).unwrap() };
        let c = job(serde_json::json!({"name": "c", "container": {"image": "busybox"}}));
        assert_eq!(c.kind(), Kind::Container);
        assert!(c.validate().is_ok(), "a container job needs no command");
        assert_eq!(
            c.effective_selector()
                .get("tempora.io/container")
                .map(String::as_str),
            Some("yes")
        );
        let both = job(
            serde_json::json!({"name": "b", "container": {"image": "busybox"},
            "http": {"url": "http://127.0.0.1/"}}),
        );
        assert_eq!(both.validate().unwrap_err().field, "container");
        let run_as = job(
            serde_json::json!({"name": "r", "container": {"image": "busybox"},
            "run_as": "nobody"}),
        );
        assert_eq!(run_as.validate().unwrap_err().field, "run_as");
        let none = job(serde_json::json!({"name": "n"}));
        assert_eq!(none.validate().unwrap_err().field, "command");
        assert_eq!(
            job(serde_json::json!({"name": "p", "command": "true"})).kind(),
            Kind::Command
        );
    }
}
