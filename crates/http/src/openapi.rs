//! The API described: OpenAPI 3.1 documents generated from the handlers' own request and
//! response types (`utoipa`), so that the document cannot drift from the code, and Swagger UI,
//! embedded in the binary, to read and try them.
//!
//! - `GET /api/v1/openapi.json`: the native API, the worker protocol and the operational
//!   endpoints.
//! - `GET /api/v1/chronos/openapi.json`: the Chronos API ([`crate::chronos::ChronosDoc`]).
//! - `GET /api/docs/`: Swagger UI over both.
//!
//! The documents and the UI are public, like `/health`: they are the same bytes for every
//! install, say nothing about this one's jobs, and a browser cannot send a token when it opens a
//! page. Trying an operation from the UI needs a token (its "Authorize" button).
//!
//! What every route answers besides its own responses comes from the one route table
//! ([`crate::auth::table`]): 401 and 403 where a credential is needed, 413 and 415 where a JSON
//! body is read, 421 for a `Host` outside `--allowed-host`, 500 and 503 from the store.

use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::auth::table::{Access, BodyKind, Route};
use crate::error::ApiError;
use crate::{apply, artifacts, backfill, jobs, ops, runs, tokens, vars, workers};

/// Where the native document is served.
pub const NATIVE_URL: &str = "/api/v1/openapi.json";
/// Where the Chronos document is served.
pub const CHRONOS_URL: &str = "/api/v1/chronos/openapi.json";

/// The native API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tempora",
        description = "The native API of tempora, a distributed job scheduler: jobs, runs, \
            schedules, tokens and the audit log, the operational endpoints, and the protocol \
            remote workers speak. Every operation but `/health` and `/ready` needs a token \
            (`Authorization: Bearer tempora_…`) whose role allows it: viewer < operator < editor \
            < admin; `worker` tokens speak the worker protocol only.",
        license(name = "Apache-2.0")
    ),
    paths(
        jobs::list, jobs::create, jobs::get, jobs::put, jobs::delete, jobs::pause,
        jobs::resume, jobs::preview, jobs::graph, backfill::backfill, apply::plan,
        apply::apply, runs::list, runs::trigger, runs::search, runs::get, runs::log,
        runs::cancel, ops::health, ops::ready, ops::metrics, ops::status, ops::cluster,
        ops::backup, vars::text, vars::json, tokens::list, tokens::create, tokens::revoke,
        tokens::audit, workers::list, workers::register, workers::claim, workers::heartbeat,
        workers::append_log, workers::finish, artifacts::fetch, artifacts::push,
        artifacts::list, artifacts::get, artifacts::delete,
    ),
    modifiers(&Security),
    tags(
        (name = "jobs", description = "Define, change, pause, backfill and apply jobs"),
        (name = "runs", description = "Trigger runs, follow them, read their output, cancel them"),
        (name = "schedules", description = "Check a schedule before saving it"),
        (name = "operations", description = "Health, readiness, metrics, status, cluster, backup"),
        (name = "tokens", description = "Tokens and the audit log (admin)"),
        (name = "workers", description = "The protocol remote workers speak (worker tokens)"),
        (name = "artifacts", description = "Uploaded scripts and binaries that jobs run"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token every operation needs (public ones say `security: [{}]`).
pub(crate) struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tempora token: `tempora token create`"))
                    .build(),
            ),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

/// The native document as served, built once.
pub fn native_json() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| finish(ApiDoc::openapi(), ""))
}

/// The Chronos document as served, built once.
pub fn chronos_json() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| {
        finish(
            crate::chronos::ChronosDoc::openapi(),
            crate::auth::table::CHRONOS_PREFIXES[0],
        )
    })
}

/// Serialize a document after the common responses are added and `allOf`s of flattened
/// structs are merged.
fn finish(doc: utoipa::openapi::OpenApi, prefix: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(&doc).unwrap_or(Value::Null);
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                let full = format!("{prefix}{path}");
                let method_upper = method.to_ascii_uppercase();
                let Some(route) = crate::auth::table::lookup(
                    &method_upper.parse().unwrap_or(axum::http::Method::GET),
                    &full,
                ) else {
                    continue;
                };
                add_common_responses(op, route, prefix.is_empty());
            }
        }
    }
    if let Some(schemas) = v
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        let all: Map<String, Value> = schemas.clone();
        for schema in schemas.values_mut() {
            merge_all_of(schema, &all);
        }
    }
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// The responses a route may give whatever its handler does (see the module doc).
fn add_common_responses(op: &mut Value, route: &Route, native: bool) {
    // The access layer answers in the native shape on every route; a Chronos handler answers
    // its own errors in Chronos's.
    let access = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    let either = if native {
        access.clone()
    } else {
        serde_json::json!({"anyOf": [
            {"$ref": "#/components/schemas/ErrorBody"},
            {"$ref": "#/components/schemas/ChronosError"},
        ]})
    };
    let mut common: Vec<(&str, &str, &Value)> = vec![
        (
            "421",
            "The `Host` header names no host this server answers for (`--allowed-host`)",
            &access,
        ),
        (
            "500",
            "An internal error (the server log says more)",
            &either,
        ),
        (
            "503",
            "The store is unavailable, or leadership changed during the request",
            &either,
        ),
    ];
    if route.access != Access::Public {
        common.push((
            "401",
            "No credential, or one that is unknown, revoked or expired",
            &access,
        ));
        common.push((
            "403",
            "The token's role does not allow this operation",
            &either,
        ));
    }
    if route.body == BodyKind::Json {
        common.push(("413", "The body is larger than this route accepts", &access));
        common.push(("415", "The body is not sent as `application/json`", &access));
    }
    if route.body == BodyKind::Binary {
        common.push((
            "413",
            "The body is larger than --max-artifact-bytes",
            &access,
        ));
        common.push((
            "415",
            "The body is not sent as `application/octet-stream`",
            &access,
        ));
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, description, schema) in common {
        responses.entry(status.to_owned()).or_insert_with(|| {
            serde_json::json!({
                "description": description,
                "content": {"application/json": {"schema": schema}},
            })
        });
    }
}

/// Replace `allOf` (how `#[serde(flatten)]` is described) by one object with the properties of
/// every part: a part that refuses unknown properties (`additionalProperties: false`, from
/// `deny_unknown_fields`) would otherwise refuse the other parts' properties too.
fn merge_all_of(schema: &mut Value, all: &Map<String, Value>) {
    let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else {
        return;
    };
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in parts {
        let mut part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => all
                .get(r.trim_start_matches("#/components/schemas/"))
                .cloned()
                .unwrap_or(Value::Null),
            None => part,
        };
        merge_all_of(&mut part, all);
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            properties.extend(p.clone());
        }
        if let Some(r) = part.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    }
    let mut merged = Map::new();
    merged.insert("type".into(), Value::from("object"));
    if let Some(d) = schema.get("description") {
        merged.insert("description".into(), d.clone());
    }
    merged.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        merged.insert("required".into(), Value::Array(required));
    }
    *schema = Value::Object(merged);
}

/// `GET /api/v1/openapi.json`.
pub async fn native() -> Response {
    json_document(native_json())
}

/// `GET /api/v1/chronos/openapi.json`.
pub async fn chronos() -> Response {
    json_document(chronos_json())
}

fn json_document(bytes: &'static [u8]) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                utoipa_swagger_ui::Config::new([
                    utoipa_swagger_ui::Url::new("tempora", NATIVE_URL),
                    utoipa_swagger_ui::Url::new("Chronos API", CHRONOS_URL),
                ])
                .persist_authorization(false),
            )
        })
        .clone()
}

/// `GET /api/docs`: to the UI's page.
pub async fn docs_root() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, "/api/docs/")],
    )
        .into_response()
}

/// `GET /api/docs/`: Swagger UI's page.
pub async fn docs_index() -> Response {
    docs_file("")
}

/// `GET /api/docs/{file}`: Swagger UI's files, from the binary.
pub async fn docs_asset(Path(file): Path<String>) -> Response {
    docs_file(&file)
}

fn docs_file(file: &str) -> Response {
    match utoipa_swagger_ui::serve(file, swagger_config()) {
        Ok(Some(f)) => (
            [
                (header::CONTENT_TYPE, f.content_type),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            f.bytes.into_owned(),
        )
            .into_response(),
        Ok(None) => {
            ApiError::not_found(format!("no file `{file}` in the API docs")).into_response()
        }
        Err(e) => {
            tracing::error!(message = "cannot serve the API docs", error = %e);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "cannot serve the API docs (see the server log)",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::table::{CHRONOS_ROUTES, ROUTES};

    fn doc(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("the document is JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
        out.sort();
        out
    }

    /// Every `$ref` of the document names a schema it holds.
    fn refs_resolve(v: &Value, doc: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let name = r.trim_start_matches("#/components/schemas/");
                    assert!(
                        doc["components"]["schemas"].get(name).is_some(),
                        "dangling {r}"
                    );
                }
                m.values().for_each(|x| refs_resolve(x, doc));
            }
            Value::Array(a) => a.iter().for_each(|x| refs_resolve(x, doc)),
            _ => {}
        }
    }

    #[test]
    fn the_native_document_describes_every_route_of_the_table_and_no_other() {
        let d = doc(native_json());
        assert_eq!(d["openapi"], "3.1.0");
        let mut expected: Vec<(String, String)> = ROUTES
            .iter()
            .filter(|r| !r.path.starts_with("/api/docs") && !r.path.ends_with("openapi.json"))
            .filter(|r| r.path != "/ping" && r.path != "/" && !r.path.starts_with("/ui/"))
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        expected.sort();
        assert_eq!(operations(&d), expected);
        refs_resolve(&d, &d);
        let text = String::from_utf8_lossy(native_json());
        assert!(!text.contains("allOf"), "flattened structs are merged");
        let mut ids = std::collections::BTreeSet::new();
        for (method, path) in operations(&d) {
            let id = d["paths"][&path][method.to_ascii_lowercase()]["operationId"].clone();
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: operationId {id} twice"
            );
        }
    }

    #[test]
    fn every_operation_describes_its_errors() {
        let d = doc(native_json());
        for (method, path) in operations(&d) {
            let op = &d["paths"][&path][method.to_ascii_lowercase()];
            let responses = op["responses"].as_object().expect("responses");
            for status in ["421", "500", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
            let public = ["/health", "/ready"].contains(&path.as_str());
            assert_eq!(responses.contains_key("401"), !public, "{method} {path}");
            assert_eq!(op.get("security").is_some(), public, "{method} {path}");
        }
        let create = &d["paths"]["/api/v1/jobs"]["post"]["responses"];
        for status in ["400", "401", "403", "409", "413", "415", "422"] {
            assert!(create.get(status).is_some(), "POST /api/v1/jobs: {status}");
        }
    }

    #[test]
    fn the_chronos_document_describes_every_chronos_route() {
        let d = doc(chronos_json());
        let mut expected: Vec<(String, String)> = CHRONOS_ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        expected.sort();
        assert_eq!(operations(&d), expected);
        refs_resolve(&d, &d);
        assert_eq!(d["servers"][1]["url"], "/v1/scheduler");
        let get = &d["paths"]["/job/{name}"]["get"]["responses"];
        assert!(get.get("401").is_some() && get.get("400").is_some());
    }
}
