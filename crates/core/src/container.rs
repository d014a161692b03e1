//! Container jobs: a run starts a container from an image through the Docker Engine API
//! (`container: {image, pull, network, volumes, entrypoint, user, cpus, memory}`) with the job's
//! `command`/`arguments`/`env`/`secrets`. What a container may be is checked here; the worker
//! starts it (`tempora_worker::container`).

use serde::{Deserialize, Serialize};

use crate::job::ValidationError;

/// Longest image reference.
pub const MAX_IMAGE: usize = 512;
/// Most volumes of one container.
pub const MAX_VOLUMES: usize = 50;
/// Most CPUs a container may be given.
pub const MAX_CPUS: f64 = 1024.0;
/// Fewest CPUs a container may be given (Docker's own minimum).
pub const MIN_CPUS: f64 = 0.01;
/// Most memory a container may be given (1 TiB).
pub const MAX_MEMORY: u64 = 1 << 40;
/// Least memory a container may be given (Docker refuses less than 6 MiB).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// When the image is pulled from its registry before a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Never: the image must already be on the worker's engine.
    Never,
    /// Only when the engine does not have it (default).
    #[default]
    Missing,
    /// Before every run (Chronos's `forcePullImage`).
    Always,
}

impl Pull {
    /// The policy's name in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Pull::Never => "never",
            Pull::Missing => "missing",
            Pull::Always => "always",
        }
    }
}

/// The container a job's runs start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference (`busybox:1.36`, `registry.example.com/team/tool@sha256:…`).
    pub image: String,
    /// `never`, `missing` (default) or `always`.
    #[serde(default)]
    pub pull: Pull,
    /// Network: `bridge` (the engine's default), `none`, `host`, or a user-defined network's
    /// name. `host` needs role `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Bind mounts `HOST_PATH:CONTAINER_PATH[:ro|rw]` or named volumes `NAME:CONTAINER_PATH[:ro|rw]`.
    /// Any volume needs role `admin` (a host path is the host's files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Replaces the image's entrypoint (a list of words; a single string is one word).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// User inside the container (`name`, `uid` or `uid:gid`; default the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// CPU limit in CPUs (e.g. `0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit: bytes, or a number with `k`, `m`, `g` (powers of 1024; `Ki`/`Mi`/`Gi`
    /// and a trailing `b` are accepted too), e.g. `256m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

fn bad(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(format!("container.{field}"), "invalid_value", message)
}

/// A memory size in bytes (`268435456`, `256m`, `256MiB`, `1g`, `512k`).
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A network or named volume's name as Docker accepts it.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An absolute path with no `..` and nothing Docker would read as an option.
fn clean_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() <= 4096
        && !s.contains([':', ',', '\0', '\n'])
        && !s.split('/').any(|p| p == "..")
}

impl ContainerSpec {
    /// The memory limit in bytes, if one is set and valid.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref().and_then(parse_memory)
    }

    /// Whether the container reaches into the host beyond an ordinary container: a volume or
    /// the host's network. Saving such a job needs role `admin`.
    pub fn needs_admin(&self) -> Option<&'static str> {
        if !self.volumes.is_empty() {
            return Some("`container.volumes` mounts the host's files");
        }
        if self.network.as_deref() == Some("host") {
            return Some("`container.network: host` shares the host's network");
        }
        None
    }

    /// Check every field; errors name `container.<field>`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let image = self.image.trim();
        if image.is_empty() {
            return Err(bad("image", "image is required"));
        }
        if image.len() > MAX_IMAGE {
            return Err(bad("image", format!("longer than {MAX_IMAGE} bytes")));
        }
        if image != self.image
            || image.starts_with(['-', '/', ':', '@', '.'])
            || image.contains("..")
            || image.contains("//")
            || !image.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@')
            })
        {
            return Err(bad(
                "image",
                "not an image reference (letters, digits and `._-/:@`, e.g. `busybox:1.36`)",
            ));
        }
        if let Some(n) = &self.network
            && n != "host"
            && n.eq_ignore_ascii_case("host")
        {
            return Err(bad("network", "write `host` in lowercase"));
        }
        if let Some(n) = &self.network
            && !plain_name(n)
        {
            return Err(bad(
                "network",
                "a network name: `bridge`, `none`, `host` or a user-defined network \
                 (letters, digits, `_.-`)",
            ));
        }
        if self.volumes.len() > MAX_VOLUMES {
            return Err(bad("volumes", format!("at most {MAX_VOLUMES} volumes")));
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = match parts.as_slice() {
                [src, dst] | [src, dst, "ro" | "rw"] => {
                    (clean_path(src) || plain_name(src)) && clean_path(dst) && *dst != "/"
                }
                _ => false,
            };
            if !ok {
                return Err(bad(
                    &format!("volumes[{i}]"),
                    "`HOST_PATH:CONTAINER_PATH[:ro|rw]` or `VOLUME:CONTAINER_PATH[:ro|rw]` with \
                     absolute paths, no `..`",
                ));
            }
        }
        if let Some(e) = &self.entrypoint {
            if e.len() > 100 {
                return Err(bad("entrypoint", "at most 100 words"));
            }
            if e.iter().any(|w| w.contains('\0') || w.len() > 4096) {
                return Err(bad(
                    "entrypoint",
                    "words of at most 4096 bytes, without NUL bytes",
                ));
            }
        }
        if let Some(u) = &self.user {
            let ok = !u.is_empty()
                && u.len() <= 64
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':'));
            if !ok {
                return Err(bad(
                    "user",
                    "a user name, uid or uid:gid (letters, digits, `_.-:`)",
                ));
            }
        }
        if let Some(c) = self.cpus
            && !(MIN_CPUS..=MAX_CPUS).contains(&c)
        {
            return Err(bad(
                "cpus",
                format!("at least {MIN_CPUS} and at most {MAX_CPUS} CPUs"),
            ));
        }
        if let Some(m) = &self.memory {
            match parse_memory(m).filter(|_| m.trim() == m) {
                Some(b) if b > MAX_MEMORY => {
                    return Err(bad("memory", "at most 1024g"));
                }
                Some(b) if b >= MIN_MEMORY => {}
                Some(_) => return Err(bad("memory", "at least 6m (Docker's minimum)")),
                None => {
                    return Err(bad(
                        "memory",
                        "a size: bytes, or a number with k, m or g (e.g. `256m`)",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ContainerSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("268435456"), Some(268_435_456));
        assert_eq!(parse_memory("256m"), Some(256 << 20));
        assert_eq!(parse_memory("256MiB"), Some(256 << 20));
        assert_eq!(parse_memory("1G"), Some(1 << 30));
        assert_eq!(parse_memory("512kb"), Some(512 << 10));
        assert_eq!(parse_memory("1.5g"), None);
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("99999999999999999999g"), None);
    }

    #[test]
    fn fields_are_checked_and_named() {
        let ok = spec(serde_json::json!({
            "image": "busybox:1.36", "pull": "never", "network": "none",
            "volumes": ["/srv/data:/data:ro", "cache:/cache"], "entrypoint": "/bin/sh",
            "user": "1000:1000", "cpus": 0.5, "memory": "64m"
        }));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert!(ok.needs_admin().is_some());
        let field = |j: serde_json::Value| spec(j).validate().unwrap_err().field;
        assert_eq!(field(serde_json::json!({"image": ""})), "container.image");
        assert_eq!(field(serde_json::json!({"image": "-x"})), "container.image");
        assert_eq!(
            field(serde_json::json!({"image": "a b"})),
            "container.image"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "network": "container:abc"})),
            "container.network"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "volumes": ["/etc:/x:z"]})),
            "container.volumes[0]"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "volumes": ["/a/../etc:/x"]})),
            "container.volumes[0]"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "volumes": ["/etc:/"]})),
            "container.volumes[0]"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "cpus": 0.0})),
            "container.cpus"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "cpus": 1e-12})),
            "container.cpus"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "memory": "18446744073709551615"})),
            "container.memory"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "memory": " 64m "})),
            "container.memory"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "network": "HOST"})),
            "container.network"
        );
        assert_eq!(
            field(serde_json::json!({"image": "http://evil/x"})),
            "container.image"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a/../b"})),
            "container.image"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "memory": "1k"})),
            "container.memory"
        );
        assert_eq!(
            field(serde_json::json!({"image": "a", "user": "a b"})),
            "container.user"
        );
        let plain = spec(serde_json::json!({"image": "a", "network": "bridge"}));
        assert_eq!(plain.needs_admin(), None);
        let host = spec(serde_json::json!({"image": "a", "network": "host"}));
        assert!(host.needs_admin().is_some());
    }
}
