//! Chronos's `container` (`{type: DOCKER, image, network, volumes, forcePullImage}`) ⇄ a
//! native [`ContainerSpec`]: a container job created through the Chronos API runs as a
//! container and reads back as Chronos JSON.

use serde_json::{Map, Value, json};

use crate::container::{ContainerSpec, Pull};
use crate::job::ValidationError;

fn bad(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(format!("container.{field}"), "invalid_value", message)
}

fn text<'a>(o: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, ValidationError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(k, "must be a string")),
    }
}

/// The native container of a Chronos `container` object.
pub fn container_from_chronos(c: &Value) -> Result<ContainerSpec, ValidationError> {
    let Value::Object(o) = c else {
        return Err(ValidationError::new(
            "container",
            "invalid_value",
            "must be an object",
        ));
    };
    match text(o, "type")? {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("docker") => {}
        Some(t) => {
            return Err(bad(
                "type",
                format!("`{t}` containers are not supported (only DOCKER)"),
            ));
        }
    }
    let image = text(o, "image")?
        .ok_or_else(|| bad("image", "image is required"))?
        .to_owned();
    let network = match text(o, "network")?.map(str::to_ascii_uppercase).as_deref() {
        None | Some("") => None,
        Some("BRIDGE") => Some("bridge".to_owned()),
        Some("HOST") => Some("host".to_owned()),
        Some("NONE") => Some("none".to_owned()),
        Some("USER") => Some(
            text(o, "networkName")?
                .ok_or_else(|| bad("networkName", "network USER needs `networkName`"))?
                .to_owned(),
        ),
        Some(n) => {
            return Err(bad(
                "network",
                format!("`{n}` is not BRIDGE, HOST, NONE or USER"),
            ));
        }
    };
    let mut volumes = Vec::new();
    match o.get("volumes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let f = format!("volumes[{i}]");
                let Value::Object(v) = v else {
                    return Err(bad(&f, "must be an object"));
                };
                let host = text(v, "hostPath")?.ok_or_else(|| bad(&f, "`hostPath` is required"))?;
                let inside = text(v, "containerPath")?
                    .ok_or_else(|| bad(&f, "`containerPath` is required"))?;
                let mode = match text(v, "mode")?.map(str::to_ascii_uppercase).as_deref() {
                    None | Some("RW") => "rw",
                    Some("RO") => "ro",
                    Some(m) => return Err(bad(&f, format!("mode `{m}` is not RO or RW"))),
                };
                volumes.push(format!("{host}:{inside}:{mode}"));
            }
        }
        Some(_) => return Err(bad("volumes", "must be a list")),
    }
    let no_parameters = match o.get("parameters") {
        None | Some(Value::Null) => true,
        Some(Value::Array(p)) => p.is_empty(),
        Some(_) => false,
    };
    if !no_parameters {
        return Err(bad(
            "parameters",
            "docker run parameters are not supported; use the native `container` fields \
             (network, volumes, entrypoint, user, cpus, memory)",
        ));
    }
    let pull = match o.get("forcePullImage") {
        Some(Value::Bool(true)) => Pull::Always,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Pull::Always,
        _ => Pull::Missing,
    };
    let spec = ContainerSpec {
        image,
        pull,
        network,
        volumes,
        entrypoint: None,
        user: None,
        cpus: None,
        memory: None,
    };
    spec.validate()?;
    Ok(spec)
}

/// Chronos's `container` object for a native container.
pub fn container_to_chronos(c: &ContainerSpec) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("DOCKER"));
    o.insert("image".into(), json!(c.image));
    match c.network.as_deref() {
        None | Some("bridge") => {
            o.insert("network".into(), json!("BRIDGE"));
        }
        Some("host") => {
            o.insert("network".into(), json!("HOST"));
        }
        Some("none") => {
            o.insert("network".into(), json!("NONE"));
        }
        Some(name) => {
            o.insert("network".into(), json!("USER"));
            o.insert("networkName".into(), json!(name));
        }
    }
    let volumes: Vec<Value> = c
        .volumes
        .iter()
        .map(|v| {
            let mut parts = v.splitn(3, ':');
            let host = parts.next().unwrap_or_default();
            let inside = parts.next().unwrap_or_default();
            let mode = if parts.next() == Some("ro") {
                "RO"
            } else {
                "RW"
            };
            json!({"hostPath": host, "containerPath": inside, "mode": mode})
        })
        .collect();
    o.insert("volumes".into(), Value::Array(volumes));
    o.insert("forcePullImage".into(), json!(c.pull == Pull::Always));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronos_containers_round_trip() {
        let c = json!({"type": "DOCKER", "image": "libmesos/ubuntu", "network": "BRIDGE",
            "volumes": [{"hostPath": "/srv", "containerPath": "/data", "mode": "RO"}],
            "forcePullImage": true});
        let spec = container_from_chronos(&c).unwrap();
        assert_eq!(spec.image, "libmesos/ubuntu");
        assert_eq!(spec.pull, Pull::Always);
        assert_eq!(spec.network.as_deref(), Some("bridge"));
        assert_eq!(spec.volumes, vec!["/srv:/data:ro".to_owned()]);
        assert_eq!(container_to_chronos(&spec), c);
        let user = container_from_chronos(
            &json!({"image": "x", "network": "USER", "networkName": "jobs"}),
        )
        .unwrap();
        assert_eq!(user.network.as_deref(), Some("jobs"));
        assert_eq!(container_to_chronos(&user)["networkName"], "jobs");
        let err = |c: Value| container_from_chronos(&c).unwrap_err().field;
        assert_eq!(
            err(json!({"type": "MESOS", "image": "x"})),
            "container.type"
        );
        assert_eq!(err(json!({"type": "DOCKER"})), "container.image");
        assert_eq!(
            err(json!({"image": "x", "network": "WEIRD"})),
            "container.network"
        );
        assert_eq!(
            err(json!({"image": "x", "volumes": [{"containerPath": "/x"}]})),
            "container.volumes[0]"
        );
        assert_eq!(
            err(json!({"image": "x", "parameters": [{"key": "privileged", "value": "true"}]})),
            "container.parameters"
        );
        assert_eq!(
            err(json!({"image": "x", "parameters": {"privileged": "true"}})),
            "container.parameters"
        );
        assert!(container_from_chronos(&json!({"image": "x", "parameters": []})).is_ok());
    }
}
