//! `tempora apply` and `tempora export`: declarative job files.
//!
//! A file (YAML or JSON) holds one job or a list of jobs, with the API's fields. `apply` reads
//! every file first and validates every job; if anything is wrong it reports each problem with
//! the file, the job and the field, and applies nothing. Otherwise the server checks the set as a
//! whole (parents, cycles with its other jobs, jobs not made by `apply` — taken over only with
//! `--adopt`), plans it (`tempora_core::apply`) and applies it in one transaction: it creates or
//! updates the jobs (parents before children), leaves identical ones alone, keeps an operator's
//! pause unless the file says `paused`, and with `--prune` deletes the jobs it manages that are
//! no longer in the files. Jobs written by `apply` carry the label `managed-by: tempora-apply`;
//! `--prune` never touches jobs without it.
//!
//! Chronos job JSON is accepted too (a `chronos-sync` directory of one job per `.json` file
//! migrates as is): a document with Chronos-only fields (`scheduleTimeZone`, `epsilon`,
//! `environmentVariables`, …) is converted with `tempora_core::chronos::to_spec`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::{Value, json};
use tempora_core::chronos;
use tempora_core::job::JobSpec;

use crate::client::{Api, Res, fail};
use crate::{ClientOpts, OutputFormat};

pub use tempora_core::apply::{MANAGED_KEY, MANAGED_VALUE};

/// Flags of `tempora apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A job file or a directory of them (`.yaml`, `.yml`, `.json`, searched recursively);
    /// repeatable.
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete jobs managed by `apply` that are not in the files.
    #[arg(long)]
    pub prune: bool,
    /// Take over jobs that exist on the server but were not made by `apply` (they then carry
    /// its label; without this flag such a job in the files is an error).
    #[arg(long)]
    pub adopt: bool,
}

/// Flags of `tempora export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write one `<name>.yaml` per job into this directory (default: all jobs as one YAML list on
    /// standard output).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Parse one file into its job documents: one job or a list per document; YAML files may hold
/// several documents separated by `---`.
fn read_file(path: &Path) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let values: Vec<Value> = if path.extension().and_then(|e| e.to_str()) == Some("json") {
        vec![
            serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid JSON: {e}", path.display()))?,
        ]
    } else {
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: invalid YAML: {e}", path.display()))?
    };
    let mut docs = Vec::new();
    for value in values {
        match value {
            Value::Array(items) => docs.extend(items),
            Value::Object(_) => docs.push(value),
            Value::Null => {}
            _ => {
                return Err(format!(
                    "{}: expected a job (a mapping) or a list of jobs",
                    path.display()
                ));
            }
        }
    }
    Ok(docs)
}

/// Whether a Chronos schedule leaves the start empty (`R5//PT1H`: "from now"). Such a start is
/// written down when the job is created; re-applying the file keeps the stored start.
fn chronos_start_is_empty(doc: &Value) -> bool {
    doc.get("schedule")
        .and_then(Value::as_str)
        .is_some_and(|s| s.trim().split('/').nth(1) == Some(""))
}

/// The stored schedule when `desired` only differs from it by the start that an empty Chronos
/// start materialised (same repetitions, period and zone).
fn kept_schedule(desired: &JobSpec, current: &Value) -> Option<String> {
    let want = desired.schedule.as_deref()?;
    let have = current.get("schedule")?.as_str()?;
    if current.get("timezone")?.as_str()? != desired.timezone {
        return None;
    }
    chronos::differs_only_in_start(want, have).then(|| have.to_owned())
}

/// Turn a document into a validated spec; errors name the field.
fn to_spec(doc: Value) -> Result<JobSpec, (String, String)> {
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(obj) = doc.as_object() else {
        return Err((name, "expected a mapping of job fields".into()));
    };
    if chronos::looks_like_chronos(obj) {
        return chronos::to_spec(obj, None, Timestamp::now(), chronos::Endpoint::Any)
            .map_err(|v| (name, format!("{}: {} (Chronos job)", v.field, v.message)));
    }
    let mut spec: JobSpec = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        (name.clone(), format!("{path}: {}", e.into_inner()))
    })?;
    spec.take_zone_prefix()
        .map_err(|v| (spec.name.clone(), format!("{}: {}", v.field, v.message)))?;
    spec.validate()
        .map_err(|v| (spec.name.clone(), format!("{}: {}", v.field, v.message)))?;
    Ok(spec)
}

/// Load and check every job of the files, or every problem found.
/// Jobs of the files, and the names of those whose Chronos schedule has an empty start.
struct Loaded {
    jobs: Vec<(PathBuf, JobSpec)>,
    /// Jobs whose Chronos schedule has an empty start.
    loose_starts: BTreeSet<String>,
    /// Jobs whose file says `paused` (or Chronos `disabled`) explicitly.
    paused_given: BTreeSet<String>,
}

fn load(paths: &[PathBuf]) -> Result<Loaded, Vec<String>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        if let Err(e) = collect_files(p, &mut files) {
            problems.push(e);
        }
    }
    let mut jobs: Vec<(PathBuf, JobSpec)> = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut loose = BTreeSet::new();
    let mut paused_given = BTreeSet::new();
    for f in files {
        let docs = match read_file(&f) {
            Ok(d) => d,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for (i, doc) in docs.into_iter().enumerate() {
            let empty_start = doc.as_object().is_some_and(chronos::looks_like_chronos)
                && chronos_start_is_empty(&doc);
            let says_paused = doc.get("paused").is_some() || doc.get("disabled").is_some();
            match to_spec(doc) {
                Ok(mut spec) => {
                    if let Some(other) = seen.insert(spec.name.clone(), f.clone()) {
                        problems.push(format!(
                            "{}: job `{}`: also defined in {}",
                            f.display(),
                            spec.name,
                            other.display()
                        ));
                        continue;
                    }
                    spec.labels
                        .insert(MANAGED_KEY.to_owned(), MANAGED_VALUE.to_owned());
                    if empty_start {
                        loose.insert(spec.name.clone());
                    }
                    if says_paused {
                        paused_given.insert(spec.name.clone());
                    }
                    jobs.push((f.clone(), spec));
                }
                Err((name, msg)) => {
                    let who = if name.is_empty() {
                        format!("job #{}", i + 1)
                    } else {
                        format!("job `{name}`")
                    };
                    problems.push(format!("{}: {who}: {msg}", f.display()));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(Loaded {
            jobs,
            loose_starts: loose,
            paused_given,
        })
    } else {
        Err(problems)
    }
}

fn strip_status(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// Every job on the server (all pages of `GET /api/v1/jobs`).
pub(crate) async fn all_jobs(api: &Api) -> Res<Vec<Value>> {
    jobs_matching(api, &[]).await
}

/// Every job that matches `filters` (`q`, `label`, `owner`, `state`), over all pages.
pub(crate) async fn jobs_matching(api: &Api, filters: &[(&str, String)]) -> Res<Vec<Value>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("limit", "1000".to_owned())];
        q.extend(filters.iter().map(|(k, v)| (*k, v.clone())));
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let v = api.list_jobs(&q).await?;
        all.extend(v["jobs"].as_array().cloned().unwrap_or_default());
        match v["next_after"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    Ok(all)
}

/// Run `tempora apply`: the files are read and checked here (each problem with its file), then
/// the server plans the whole set and applies it in one transaction (`POST /api/v1/apply`), or
/// only plans it (`--dry-run`: `POST /api/v1/apply/plan`).
pub async fn apply(args: ApplyArgs, opts: ClientOpts) -> Res<()> {
    let loaded = load(&args.files).map_err(|problems| {
        let mut msg = format!(
            "nothing applied: {} problem(s) in the job files",
            problems.len()
        );
        for p in problems {
            msg.push_str("\n  ");
            msg.push_str(&p);
        }
        fail(2, msg)
    })?;
    let api = Api::new(&opts)?;
    // A Chronos schedule with an empty start keeps the start stored when it was created.
    let existing: BTreeMap<String, Value> = if loaded.loose_starts.is_empty() {
        BTreeMap::new()
    } else {
        all_jobs(&api)
            .await?
            .into_iter()
            .filter_map(|j| Some((j["name"].as_str()?.to_owned(), strip_status(j))))
            .collect()
    };
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut jobs = Vec::with_capacity(loaded.jobs.len());
    for (file, mut spec) in loaded.jobs {
        if loaded.loose_starts.contains(&spec.name)
            && let Some(kept) = existing
                .get(&spec.name)
                .and_then(|cur| kept_schedule(&spec, cur))
        {
            spec.schedule = Some(kept);
        }
        files.insert(spec.name.clone(), file.display().to_string());
        jobs.push(spec);
    }
    let body = json!({
        "jobs": jobs,
        "paused_given": loaded.paused_given,
        "prune": args.prune,
        "adopt": args.adopt,
    });
    let plan = api.apply(&body, args.dry_run).await.map_err(|e| {
        let mut f = crate::client::Failure::from(e);
        f.message = with_files(&f.message, &files, args.dry_run);
        f
    })?;
    let verb = |v: &str| match (v, args.dry_run) {
        ("unchanged", _) => "unchanged".to_owned(),
        (v, true) => format!("would {v}"),
        (v, false) => format!("{v}d"),
    };
    let changes: Vec<Value> = plan["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            let action = verb(c["action"].as_str().unwrap_or_default());
            let file = c["job"].as_str().and_then(|j| files.get(j)).cloned();
            c["action"] = json!(action);
            c["file"] = json!(file);
            c
        })
        .collect();
    if opts.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"dry_run": args.dry_run, "changes": changes}))
                .unwrap_or_default()
        );
        return Ok(());
    }
    for c in &changes {
        println!(
            "{:<14} {}",
            c["action"].as_str().unwrap_or(""),
            c["job"].as_str().unwrap_or("")
        );
        for f in c["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let show = |v: &Value| match v {
                Value::Null => "(not set)".to_owned(),
                other => other.to_string(),
            };
            println!(
                "    {}: {} → {}",
                f["field"].as_str().unwrap_or(""),
                show(&f["from"]),
                show(&f["to"])
            );
        }
    }
    let count = |a: &str| {
        changes
            .iter()
            .filter(|c| c["action"].as_str().is_some_and(|x| x.contains(a)))
            .count()
    };
    println!(
        "{}: {} created, {} updated, {} unchanged, {} deleted",
        if args.dry_run { "plan" } else { "applied" },
        count("create"),
        count("update"),
        count("unchanged"),
        count("delete"),
    );
    Ok(())
}

/// The server's list of problems, each job's line with its file, as the CLI's own are.
fn with_files(message: &str, files: &BTreeMap<String, String>, dry_run: bool) -> String {
    let message = if dry_run {
        message.replacen("nothing applied", "the plan fails", 1)
    } else {
        message.to_owned()
    };
    message
        .lines()
        .map(|line| {
            let file = line
                .trim_start()
                .strip_prefix("job `")
                .and_then(|rest| rest.split_once('`'))
                .and_then(|(job, _)| files.get(job));
            match file {
                Some(f) => format!("  {f}: {}", line.trim_start()),
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `tempora export`.
pub async fn export(args: ExportArgs, opts: ClientOpts) -> Res<()> {
    let api = Api::new(&opts)?;
    let jobs: Vec<Value> = all_jobs(&api)
        .await?
        .into_iter()
        .map(strip_status)
        .collect();
    if let Some(dir) = write_job_files(&jobs, args.dir.as_deref())? {
        eprintln!("exported {} job(s) to {}", jobs.len(), dir.display());
    }
    Ok(())
}

/// Job documents as `apply` reads them: one YAML list on standard output, or one
/// `<name>.yaml` per job in `dir` (made 0700, files 0600: they are the server's configuration).
/// Returns the directory written to.
pub(crate) fn write_job_files<'a>(jobs: &[Value], dir: Option<&'a Path>) -> Res<Option<&'a Path>> {
    match dir {
        None => {
            let text = serde_yaml_ng::to_string(jobs)
                .map_err(|e| fail(1, format!("cannot encode YAML: {e}")))?;
            print!("{text}");
            Ok(None)
        }
        Some(dir) => {
            use std::io::Write;
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(2, format!("cannot create {}: {e}", dir.display())))?;
            for j in jobs {
                let name = j["name"].as_str().unwrap_or("job");
                let path = dir.join(format!("{name}.yaml"));
                let mut text = serde_yaml_ng::to_string(j)
                    .map_err(|e| fail(1, format!("cannot encode YAML: {e}")))?;
                // The kind follows from the fields (`http`, `container`); say it in words too.
                if let Ok(spec) = serde_json::from_value::<tempora_core::job::JobSpec>(j.clone()) {
                    text = format!("# kind: {}\n{text}", spec.kind());
                }
                crate::client::create_private(&path)?
                    .write_all(text.as_bytes())
                    .map_err(|e| fail(2, format!("cannot write {}: {e}", path.display())))?;
            }
            Ok(Some(dir))
        }
    }
}
