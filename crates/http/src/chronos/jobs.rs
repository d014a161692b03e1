//! The job routes: list, read, search, summary, save (scheduled and dependent), start, delete, the graph and the leader.

use super::*;

/// `GET /scheduler/jobs`.
#[utoipa::path(
    get,
    path = "/jobs",
    operation_id = "chronosListJobs",
    tag = "chronos",
    responses((status = 200, description = "Every job", body = Vec<super::doc::ChronosJob>))
)]
pub(super) async fn list(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    Ok(json_response(Value::Array(
        jobs.iter().map(render).collect(),
    )))
}

/// `GET /scheduler/job/{name}`.
#[utoipa::path(
    get,
    path = "/job/{name}",
    operation_id = "chronosGetJob",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "The job", body = super::doc::ChronosJob), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn get_job(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    Ok(json_response(render(&rec)))
}

/// Query of `jobs/search` (unknown parameters are ignored, as in Chronos).
#[derive(Debug, Deserialize)]
pub(super) struct SearchQuery {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

pub(super) fn count_param(field: &str, v: Option<&str>, default: usize) -> ChronosResult<usize> {
    match v {
        None | Some("") => Ok(default),
        Some(x) => x.parse::<usize>().map_err(|_| {
            ChronosError::bad(format!(
                "{field}: must be a non-negative integer, not `{x}`"
            ))
        }),
    }
}

/// `GET /scheduler/jobs/search?name=&command=&any=&limit=10&offset=0`: case-insensitive
/// substring match; `name` and `command` must both match; `any` matches name or command and
/// also admits jobs the other terms rejected.
#[utoipa::path(
    get,
    path = "/jobs/search",
    operation_id = "chronosSearchJobs",
    tag = "chronos",
    params(("name" = Option<String>, Query, description = "Substring of the name"), ("command" = Option<String>, Query, description = "Substring of the command"), ("any" = Option<String>, Query, description = "Substring of the name, command, description or owner"), ("limit" = Option<u32>, Query, description = "Most jobs to answer"), ("offset" = Option<u32>, Query, description = "Jobs to skip")),
    responses((status = 200, description = "The jobs that match", body = Vec<super::doc::ChronosJob>), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn search(
    State(s): State<Arc<AppState>>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ChronosResult<Response> {
    let Query(q) = q.map_err(|e| ChronosError::bad(e.body_text()))?;
    let limit = count_param("limit", q.limit.as_deref(), 10)?;
    let offset = count_param("offset", q.offset.as_deref(), 0)?;
    let lower = |o: &Option<String>| {
        o.as_ref()
            .filter(|x| !x.is_empty())
            .map(|x| x.to_lowercase())
    };
    let (name, command, any) = (lower(&q.name), lower(&q.command), lower(&q.any));
    let contains = |hay: &str, needle: &Option<String>| {
        needle
            .as_ref()
            .is_none_or(|n| hay.to_lowercase().contains(n.as_str()))
    };
    let jobs = all_jobs(s.store.as_ref()).await?;
    let found: Vec<Value> = jobs
        .iter()
        .filter(|j| {
            let by_terms = contains(&j.spec.name, &name) && contains(&j.spec.command, &command);
            let by_any =
                any.is_some() && (contains(&j.spec.name, &any) || contains(&j.spec.command, &any));
            if name.is_none() && command.is_none() && any.is_some() {
                by_any
            } else {
                by_terms || by_any
            }
        })
        .skip(offset)
        .take(limit)
        .map(render)
        .collect();
    Ok(json_response(Value::Array(found)))
}

/// `GET /scheduler/jobs/summary` (the Chronos 3.x web UI's list).
#[utoipa::path(
    get,
    path = "/jobs/summary",
    operation_id = "chronosJobsSummary",
    tag = "chronos",
    responses((status = 200, description = "`{\"jobs\": [{name, status, state, schedule, parents, disabled}]}`", body = Object))
)]
pub(super) async fn summary(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let state = current_state(s.store.as_ref(), &j.spec.name).await?;
        out.push(json!({
            "name": j.spec.name,
            "status": last_state(j),
            "state": state,
            "schedule": if j.spec.parents.is_empty() {
                j.spec.schedule.clone().unwrap_or_default()
            } else {
                String::new()
            },
            "parents": j.spec.parents,
            "disabled": j.spec.paused,
        }));
    }
    Ok(json_response(json!({ "jobs": out })))
}

/// Query of a manual start.
#[derive(Debug, Deserialize)]
pub(super) struct StartQuery {
    arguments: Option<String>,
}

/// `PUT /scheduler/job/{name}?arguments=…`: start the job now. For shell jobs the arguments
/// (with `;` removed) are appended to the command; otherwise they replace the job's arguments.
#[utoipa::path(
    put,
    path = "/job/{name}",
    operation_id = "chronosStartJob",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name"), ("arguments" = Option<String>, Query, description = "Appended to a shell command (`;` removed), or the arguments of a non-shell job")),
    responses((status = 204, description = "Started"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn start(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
) -> ChronosResult<Response> {
    let Query(q) = q.map_err(|e| ChronosError::bad(e.body_text()))?;
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let args = q
        .arguments
        .as_deref()
        .map(chronos::clean_arguments)
        .filter(|a| !a.trim().is_empty());
    // Arguments can make an interpreter run anything (`-c id`): an editor's power.
    if args.is_some() && !caller.role.allows(Role::Editor) {
        return Err(ChronosError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "a start with `arguments` needs role `editor`; token `{}` has role `{}`",
                caller.name, caller.role
            ),
        });
    }
    if args.is_some()
        && caller.role != Role::Admin
        && let Some(why) = crate::jobs::overrides_need_admin(&s, &rec.spec)
    {
        return Err(ChronosError {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "job `{name}` {why}: a start with `arguments` needs role `admin`; token `{}` has role `{}`",
                caller.name, caller.role
            ),
        });
    }
    let note = AuditNote {
        detail: args
            .as_deref()
            .map(|a| format!("arguments: {}", a.split_whitespace().count())),
        ..AuditNote::default()
    };
    if args.as_deref().is_some_and(|a| a.contains('\0')) {
        return Err(ChronosError::bad("arguments must not contain NUL"));
    }
    let overrides = match args {
        None => RunOverrides::default(),
        Some(a) if rec.spec.shell => RunOverrides {
            command_suffix: Some(a),
            ..RunOverrides::default()
        },
        Some(a) => RunOverrides {
            arguments: Some(a.split_whitespace().map(str::to_owned).collect()),
            ..RunOverrides::default()
        },
    };
    let run = s
        .store
        .trigger_run(&name, overrides, false, tempora_store::clock::now())
        .await?;
    s.work_ready.notify_one();
    tracing::info!(message = "run triggered (Chronos API)", job = %name, run_id = run.id, state = %run.state);
    Ok(note.attach(StatusCode::NO_CONTENT))
}

/// `DELETE /scheduler/job/{name}`: Chronos rewires the children first. A dependent job's
/// children inherit its parents; a scheduled job's only-child becomes a scheduled job with its
/// schedule; a child with other parents just drops it.
#[utoipa::path(
    delete,
    path = "/job/{name}",
    operation_id = "chronosDeleteJob",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn delete(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<StatusCode> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let children: Vec<String> = s
        .store
        .dependency_edges()
        .await?
        .into_iter()
        .filter(|(p, _)| *p == name)
        .map(|(_, c)| c)
        .collect();
    let now = tempora_store::clock::now();
    for child in &children {
        let Some(c) = s.store.get_job(child).await? else {
            continue;
        };
        let spec = rewire(c.spec, &rec.spec);
        s.store.put_job(spec, PutMode::Upsert, now).await?;
        s.scheduler.job_changed(child);
    }
    if !s.store.delete_job(&name, false).await? {
        return Err(ChronosError::unknown_job(&name));
    }
    s.stops_requested.notify_one();
    s.scheduler.job_changed(&name);
    tracing::info!(message = "job deleted (Chronos API)", job = %name, rewired = children.len());
    Ok(StatusCode::NO_CONTENT)
}

/// A child of `deleted`, rewired as Chronos does when `deleted` goes away.
pub(super) fn rewire(mut child: JobSpec, deleted: &JobSpec) -> JobSpec {
    let others: Vec<String> = child
        .parents
        .iter()
        .filter(|p| **p != deleted.name)
        .cloned()
        .collect();
    if !deleted.parents.is_empty() {
        let mut parents = others;
        for p in &deleted.parents {
            if !parents.contains(p) {
                parents.push(p.clone());
            }
        }
        child.parents = parents;
    } else if others.is_empty() {
        child.parents.clear();
        child.schedule = deleted.schedule.clone();
        child.timezone = deleted.timezone.clone();
        match deleted.chronos.get("scheduleTimeZone") {
            Some(z) => child.chronos.insert("scheduleTimeZone".into(), z.clone()),
            None => child.chronos.remove("scheduleTimeZone"),
        };
    } else {
        child.parents = others;
    }
    child
}

/// Read a Chronos job document (a JSON object) from a request body.
pub(super) fn job_document(
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<Map<String, Value>> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ChronosError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!(
                    "the request body is larger than {} bytes",
                    crate::extract::MAX_BODY
                ),
            }
        } else {
            ChronosError::bad(e.body_text())
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ChronosError::bad("body: must be a JSON object (a job)")),
        Err(e) => Err(ChronosError::bad(format!("body: malformed JSON: {e}"))),
    }
}

pub(super) async fn save(
    s: &AppState,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> ChronosResult<Response> {
    let doc = job_document(body)?;
    let name = doc.get("name").and_then(Value::as_str).unwrap_or_default();
    let existing = if tempora_core::job::validate_name(name).is_ok() {
        s.store.get_job(name).await?
    } else {
        None
    };
    let now = tempora_store::clock::now();
    let mut spec = chronos::to_spec(&doc, existing.as_ref().map(|e| &e.spec), now, endpoint)?;
    crate::jobs::check_privileges(s, &spec, caller)?;
    let stored = existing.as_ref().map(|r| &r.spec);
    crate::jobs::seal_secrets(s, &mut spec, stored)?;
    let out = s.store.put_job(spec, PutMode::Upsert, now).await?;
    s.scheduler.job_changed(&out.record.spec.name);
    tracing::info!(message = "job saved (Chronos API)", job = %out.record.spec.name, created = out.created);
    Ok(crate::auth::with_spec_note(
        StatusCode::NO_CONTENT,
        &out.record.spec,
    ))
}

/// `POST|PUT /scheduler/iso8601`: create or replace a scheduled job.
#[utoipa::path(
    method(post, put),
    path = "/iso8601",
    operation_id = "chronosSaveScheduledJob",
    tag = "chronos",
    request_body = super::doc::ChronosJob,
    responses((status = 204, description = "Saved"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn save_scheduled(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<Response> {
    save(&s, &caller, body, Endpoint::Scheduled).await
}

/// `POST|PUT /scheduler/dependency`: create or replace a dependent job.
#[utoipa::path(
    method(post, put),
    path = "/dependency",
    operation_id = "chronosSaveDependentJob",
    tag = "chronos",
    request_body = super::doc::ChronosJob,
    responses((status = 204, description = "Saved"), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn save_dependent(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ChronosResult<Response> {
    save(&s, &caller, body, Endpoint::Dependent).await
}

pub(super) fn dot_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /scheduler/graph/dot`: every job a vertex (integer ids, names as labels).
#[utoipa::path(
    get,
    path = "/graph/dot",
    operation_id = "chronosGraphDot",
    tag = "chronos",
    responses((status = 200, description = "The dependency graph in Graphviz DOT", body = String, content_type = "text/plain"))
)]
pub(super) async fn graph_dot(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let ids: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.spec.name.as_str(), i + 1))
        .collect();
    let mut out = String::from("digraph G {\n");
    for j in &jobs {
        let _ = writeln!(
            out,
            "  {} [ label = \"{}\" ];",
            ids[j.spec.name.as_str()],
            dot_quote(&j.spec.name)
        );
    }
    for (p, c) in s.store.dependency_edges().await? {
        if let (Some(p), Some(c)) = (ids.get(p.as_str()), ids.get(c.as_str())) {
            let _ = writeln!(out, "  {p} -> {c};");
        }
    }
    out.push_str("}\n");
    Ok(text(out))
}

/// `GET /scheduler/graph/csv`: `node,<name>,<lastState>,<currentState>` per job and
/// `link,<parent>,<child>` per edge.
#[utoipa::path(
    get,
    path = "/graph/csv",
    operation_id = "chronosGraphCsv",
    tag = "chronos",
    responses((status = 200, description = "`node,<name>,<last state>` and `link,<parent>,<child>` lines", body = String, content_type = "text/plain"))
)]
pub(super) async fn graph_csv(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let jobs = all_jobs(s.store.as_ref()).await?;
    let mut out = String::new();
    for j in &jobs {
        let state = current_state(s.store.as_ref(), &j.spec.name).await?;
        let _ = writeln!(out, "node,{},{},{state}", j.spec.name, last_state(j));
    }
    for (p, c) in s.store.dependency_edges().await? {
        let _ = writeln!(out, "link,{p},{c}");
    }
    Ok(text(out))
}

/// `GET /scheduler/leader`: the node holding the leader lease (this node when the lease is
/// free or unknown: any node answers every call).
#[utoipa::path(
    get,
    path = "/leader",
    operation_id = "chronosLeader",
    tag = "chronos",
    responses((status = 200, description = "`{\"leader\": \"host:port\"}`", body = Object))
)]
pub(super) async fn leader(State(s): State<Arc<AppState>>) -> ChronosResult<Response> {
    let view = s.store.cluster_view(tempora_store::clock::now()).await?;
    let leader = view
        .lease
        .filter(|l| l.expires_at > view.now)
        .map_or_else(|| s.advertise.clone(), |l| l.address);
    Ok(json_response(json!({ "leader": leader })))
}
