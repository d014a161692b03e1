//! The server's TOML configuration file: flags > environment (`TEMPORA_*`) >
//! config file > defaults.
//!
//! `--config FILE` (or `TEMPORA_CONFIG`) names the file. Each key is the flag's name with `_`
//! for `-` (`data_dir`, `listen`, `local_slots`, `local_labels`,
//! `local_capabilities`, `docker_socket`, `node_id`, `log_format`, `shutdown_grace`,
//! `kill_grace`, `lease_ttl`, `claim_wait_max`, `max_log_bytes`, `sqlite_cache_mib`, `sqlite_synchronous`, `database_url`, `leader_lease_ttl`,
//! `leader_renew_every`, `no_leader`, `max_clock_offset`, `claim_poll_every`, `database_pool_size`,
//! `keep_runs`, `keep_days`, `retention_every`, `retention_batch`, `job_metrics_max`, `admin_token_file`, `secret_key_file`,
//! `webhook_key_file`, `smtp_url`, `smtp_from`, `smtp_ca_file`, `notify_default`, `max_artifact_bytes`, `artifact_cache_max`, `notify_retry_for`,
//! `cors_origin`, `allowed_host`, `metrics_public`, `ui_session_ttl`, `pass_env`, `containment`, `tls_cert`, `tls_key`,
//! `client_ca`). The file's values are exported as the matching
//! `TEMPORA_*` variables where those are not already set, before the command line is parsed, so
//! clap's own flag/env handling yields exactly that precedence.

use std::ffi::OsString;

/// Keys the file may hold, with their environment variables.
const KEYS: [(&str, &str); 46] = [
    ("data_dir", "TEMPORA_DATA_DIR"),
    ("listen", "TEMPORA_LISTEN"),
    ("local_slots", "TEMPORA_LOCAL_SLOTS"),
    ("local_labels", "TEMPORA_LOCAL_LABELS"),
    ("local_capabilities", "TEMPORA_LOCAL_CAPABILITIES"),
    ("docker_socket", "TEMPORA_DOCKER_SOCKET"),
    ("node_id", "TEMPORA_NODE_ID"),
    ("log_format", "TEMPORA_LOG_FORMAT"),
    ("shutdown_grace", "TEMPORA_SHUTDOWN_GRACE"),
    ("kill_grace", "TEMPORA_KILL_GRACE"),
    ("lease_ttl", "TEMPORA_LEASE_TTL"),
    ("claim_wait_max", "TEMPORA_CLAIM_WAIT_MAX"),
    ("max_log_bytes", "TEMPORA_MAX_LOG_BYTES"),
    ("sqlite_cache_mib", "TEMPORA_SQLITE_CACHE_MIB"),
    ("sqlite_synchronous", "TEMPORA_SQLITE_SYNCHRONOUS"),
    ("database_url", "TEMPORA_DATABASE_URL"),
    ("leader_lease_ttl", "TEMPORA_LEADER_LEASE_TTL"),
    ("leader_renew_every", "TEMPORA_LEADER_RENEW_EVERY"),
    ("no_leader", "TEMPORA_NO_LEADER"),
    ("max_clock_offset", "TEMPORA_MAX_CLOCK_OFFSET"),
    ("claim_poll_every", "TEMPORA_CLAIM_POLL_EVERY"),
    ("database_pool_size", "TEMPORA_DATABASE_POOL_SIZE"),
    ("keep_runs", "TEMPORA_KEEP_RUNS"),
    ("job_metrics_max", "TEMPORA_JOB_METRICS_MAX"),
    ("keep_days", "TEMPORA_KEEP_DAYS"),
    ("retention_every", "TEMPORA_RETENTION_EVERY"),
    ("retention_batch", "TEMPORA_RETENTION_BATCH"),
    ("admin_token_file", "TEMPORA_ADMIN_TOKEN_FILE"),
    ("secret_key_file", "TEMPORA_SECRET_KEY_FILE"),
    ("webhook_key_file", "TEMPORA_WEBHOOK_KEY_FILE"),
    ("smtp_url", "TEMPORA_SMTP_URL"),
    ("smtp_from", "TEMPORA_SMTP_FROM"),
    ("smtp_ca_file", "TEMPORA_SMTP_CA_FILE"),
    ("notify_retry_for", "TEMPORA_NOTIFY_RETRY_FOR"),
    ("notify_default", "TEMPORA_NOTIFY_DEFAULT"),
    ("max_artifact_bytes", "TEMPORA_MAX_ARTIFACT_BYTES"),
    ("artifact_cache_max", "TEMPORA_ARTIFACT_CACHE_MAX"),
    ("cors_origin", "TEMPORA_CORS_ORIGIN"),
    ("allowed_host", "TEMPORA_ALLOWED_HOST"),
    ("metrics_public", "TEMPORA_METRICS_PUBLIC"),
    ("ui_session_ttl", "TEMPORA_UI_SESSION_TTL"),
    ("pass_env", "TEMPORA_PASS_ENV"),
    ("containment", "TEMPORA_CONTAINMENT"),
    ("tls_cert", "TEMPORA_TLS_CERT"),
    ("tls_key", "TEMPORA_TLS_KEY"),
    ("client_ca", "TEMPORA_CLIENT_CA"),
];

/// The config file named by `--config FILE` / `--config=FILE` in `args`, or `TEMPORA_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(v.into());
        }
    }
    std::env::var_os("TEMPORA_CONFIG")
}

/// Read the file and return the `(variable, value)` pairs to export (those not already set).
pub fn load(path: &OsString) -> Result<Vec<(&'static str, String)>, String> {
    let shown = std::path::Path::new(path).display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {shown}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {shown}: invalid TOML: {e}"))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let Some((_, var)) = KEYS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "config file {shown}: unknown key `{key}` (known: {})",
                known.join(", ")
            ));
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "config file {shown}: `{key}` must be a string, an integer or a boolean, not {}",
                    other.type_str()
                ));
            }
        };
        if std::env::var_os(var).is_none() {
            out.push((*var, text));
        }
    }
    Ok(out)
}

/// The effective configuration of `tempora server` (after flags, environment, file and
/// defaults), one entry per key of the file (plus `config`, the file itself), for `/vars`.
/// A database URL's password is redacted; no file's contents are read.
pub fn effective(a: &crate::server::ServerArgs) -> Vec<(String, String)> {
    use tempora_core::duration::format_duration as d;
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let lower = |v: &dyn std::fmt::Debug| format!("{v:?}").to_ascii_lowercase();
    let labels: Vec<String> = a
        .local_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let entries: Vec<(&str, String)> = vec![
        ("config", path(&a.config)),
        ("data_dir", a.data_dir.display().to_string()),
        ("listen", a.listen.to_string()),
        ("local_slots", a.local_slots.to_string()),
        ("local_labels", labels.join(",")),
        ("local_capabilities", a.local_capabilities.clone()),
        ("docker_socket", a.docker_socket.clone()),
        ("node_id", a.node_id.clone().unwrap_or_default()),
        ("log_format", lower(&a.log_format)),
        ("shutdown_grace", d(a.shutdown_grace)),
        ("kill_grace", d(a.kill_grace)),
        ("lease_ttl", d(a.lease_ttl)),
        ("claim_wait_max", d(a.claim_wait_max)),
        ("max_log_bytes", a.max_log_bytes.to_string()),
        ("sqlite_cache_mib", a.sqlite_cache_mib.to_string()),
        ("sqlite_synchronous", lower(&a.sqlite_synchronous)),
        (
            "database_url",
            a.database_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
        ),
        ("leader_lease_ttl", d(a.leader_lease_ttl)),
        ("leader_renew_every", d(a.leader_renew_every)),
        ("no_leader", a.no_leader.to_string()),
        ("max_clock_offset", d(a.max_clock_offset)),
        ("claim_poll_every", d(a.claim_poll_every)),
        ("database_pool_size", a.database_pool_size.to_string()),
        ("keep_runs", a.keep_runs.to_string()),
        ("job_metrics_max", a.job_metrics_max.to_string()),
        ("keep_days", a.keep_days.to_string()),
        ("retention_every", d(a.retention_every)),
        ("retention_batch", a.retention_batch.to_string()),
        ("admin_token_file", path(&a.admin_token_file)),
        ("secret_key_file", path(&a.secret_key_file)),
        ("webhook_key_file", path(&a.webhook_key_file)),
        (
            "smtp_url",
            a.smtp_url.as_deref().map(redact_url).unwrap_or_default(),
        ),
        ("smtp_from", a.smtp_from.clone().unwrap_or_default()),
        ("smtp_ca_file", path(&a.smtp_ca_file)),
        ("notify_retry_for", d(a.notify_retry_for)),
        ("max_artifact_bytes", a.max_artifact_bytes.to_string()),
        ("artifact_cache_max", a.artifact_cache_max.to_string()),
        (
            "notify_default",
            a.notify_default
                .iter()
                .flatten()
                .map(describe_rule)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("cors_origin", a.cors_origins.join(",")),
        ("allowed_host", a.allowed_hosts.join(",")),
        ("metrics_public", a.metrics_public.to_string()),
        ("ui_session_ttl", d(a.ui_session_ttl)),
        ("pass_env", a.pass_env.join(",")),
        ("containment", lower(&a.containment)),
        ("tls_cert", path(&a.tls_cert)),
        ("tls_key", path(&a.tls_key)),
        ("client_ca", path(&a.client_ca)),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// A PostgreSQL connection string with its password replaced by `***`: the URL form's
/// `user:password@` and `password=` / `sslpassword=` query parameters, or in the keyword/value
/// form (`host=db password = 'x y'`, libpq's quoting) those keywords' values. A keyword/value
/// string that cannot be read is replaced whole.
/// A notification rule as `/vars` shows it: its events and target, a URL cut to its scheme and
/// host (a Slack or webhook URL may be a credential).
fn describe_rule(r: &tempora_core::notify::NotifyRule) -> String {
    let on: Vec<&str> = r.on.iter().map(|e| e.as_str()).collect();
    let host = |u: &str| {
        let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        format!("{scheme}://{host}/…")
    };
    let target = match r.target() {
        Some(tempora_core::notify::Target::Webhook(u)) => format!("webhook {}", host(&u)),
        Some(tempora_core::notify::Target::Slack(u)) => format!("slack {}", host(&u)),
        Some(tempora_core::notify::Target::Email(to)) => format!("email {}", to.join(",")),
        None => "-".to_owned(),
    };
    format!("on {}: {target}", on.join(","))
}

pub fn redact_url(url: &str) -> String {
    if url.contains("://") {
        redact_uri(url)
    } else {
        redact_keywords(url).unwrap_or_else(|| "*** (not shown: unreadable)".to_owned())
    }
}

fn is_secret(key: &str) -> bool {
    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
}

fn redact_uri(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    match out.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => out,
    }
}

/// libpq's keyword/value form: `key = value` pairs, a value optionally in single quotes with
/// backslash escapes.
fn redact_keywords(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut out: Vec<String> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i == b.len() {
            return Some(out.join(" "));
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[key_start..i];
        skip_ws(&mut i);
        if key.is_empty() || i == b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let value_start = i;
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        let value = text.get(value_start..i.min(b.len()))?;
        out.push(if is_secret(key) {
            format!("{key}=***")
        } else {
            format!("{key}={value}")
        });
    }
}

/// For a server flag whose value clap rejected, say where the value came from when it was not
/// the command line: the config file (naming the file and its key) or the environment variable.
/// clap itself only names the flag, which the user may never have typed.
pub fn value_source_note(
    error: &clap::Error,
    args: &[OsString],
    config_file: Option<&(OsString, Vec<&'static str>)>,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // clap names the argument `--flag <VALUE>`.
    let flag_of = |key: &str| format!("--{}", key.replace('_', "-"));
    let (key, var) = KEYS
        .iter()
        .find(|(key, _)| arg.split(' ').next() == Some(flag_of(key).as_str()))?;
    let flag = flag_of(key);
    let typed = args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
    });
    if typed {
        return None;
    }
    match config_file {
        Some((path, exported)) if exported.contains(var) => Some(format!(
            "note: the value is `{key}` in the config file {}",
            std::path::Path::new(path).display()
        )),
        _ if std::env::var_os(var).is_some() => {
            Some(format!("note: the value is the environment variable {var}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_database_urls_are_redacted() {
        use super::redact_url;
        assert_eq!(
            redact_url("postgres://tempora:s3cr%40t@db:5432/tempora?sslmode=require"),
            "postgres://tempora:***@db:5432/tempora?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redact_url("postgresql://db/x?user=u&password=p&sslpassword=q"),
            "postgresql://db/x?user=u&password=***&sslpassword=***"
        );
        assert_eq!(
            redact_url("host=db user=u password=p dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
        assert_eq!(redact_url("host=db"), "host=db");
        assert_eq!(
            redact_url("host=db user=u password = SECRETPW dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
        assert_eq!(
            redact_url(r"host=db password='SEC RET\'PW' dbname=x"),
            "host=db password=*** dbname=x"
        );
        assert_eq!(
            redact_url("host=db PASSWORD=x sslpassword='a b'"),
            "host=db PASSWORD=*** sslpassword=***"
        );
        assert_eq!(
            redact_url("host=db password='unterminated"),
            "*** (not shown: unreadable)"
        );
        assert_eq!(
            redact_url("postgres://u@db/x?Password=p&sslmode=require"),
            "postgres://u@db/x?Password=***&sslmode=require"
        );
    }

    #[test]
    fn the_effective_configuration_has_every_key_of_the_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            server: crate::server::ServerArgs,
        }
        let cli = Cli::try_parse_from(["tempora", "--database-url", "postgres://u:pw@db/x"])
            .expect("flags");
        let config = super::effective(&cli.server);
        for (key, _) in super::KEYS {
            assert!(config.iter().any(|(k, _)| k == key), "{key} is missing");
        }
        let url = config
            .iter()
            .find(|(k, _)| k == "database_url")
            .map(|(_, v)| v.as_str());
        assert_eq!(url, Some("postgres://u:***@db/x"));
        assert!(!config.iter().any(|(_, v)| v.contains("pw")));
    }

    use super::*;

    /// Every server flag that reads a `TEMPORA_*` variable can also be set in the file.
    #[test]
    fn every_server_flag_with_a_variable_has_a_key() {
        use clap::Args;
        let cmd = crate::server::ServerArgs::augment_args(clap::Command::new("server"));
        for arg in cmd.get_arguments() {
            let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
                continue;
            };
            if var == "TEMPORA_CONFIG" {
                continue;
            }
            assert!(
                KEYS.iter().any(|(_, v)| *v == var),
                "{var} (--{}) has no config-file key",
                arg.get_id()
            );
        }
    }

    #[test]
    fn strings_integers_and_booleans_are_exported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "local_labels = \"zone=a\"\nlocal_slots = 4\nno_leader = true\n",
        )
        .unwrap();
        let vars = load(&path.clone().into_os_string()).unwrap();
        for want in [
            ("TEMPORA_LOCAL_LABELS", "zone=a"),
            ("TEMPORA_LOCAL_SLOTS", "4"),
            ("TEMPORA_NO_LEADER", "true"),
        ] {
            if std::env::var_os(want.0).is_none() {
                assert!(
                    vars.iter().any(|(k, v)| (*k, v.as_str()) == want),
                    "{want:?} not in {vars:?}"
                );
            }
        }
        std::fs::write(&path, "listen = 1.5\n").unwrap();
        let err = load(&path.into_os_string()).unwrap_err();
        assert!(err.contains("`listen` must be a string"), "{err}");
    }
}
