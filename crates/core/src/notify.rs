//! Notifications: a job's `notify` rules (`{on: [events], webhook | email | slack}`) and which
//! events a run's end is. The store records one notification per matching rule in the
//! transaction that ends the run (so none is lost); `tempora-notify` delivers them.

use serde::{Deserialize, Serialize};

use crate::job::ValidationError;
use crate::run::RunState;

/// Most rules of one job.
pub const MAX_RULES: usize = 20;
/// Most addresses of one email rule.
pub const MAX_ADDRESSES: usize = 20;
/// Longest URL or address.
pub const MAX_TARGET: usize = 2048;

/// What a notification is about.
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
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An attempt failed, timed out or was lost (each attempt, retried or not).
    Failure,
    /// A run succeeded.
    Success,
    /// An occurrence's last attempt failed: no retry is left.
    RetryExhausted,
    /// An attempt timed out.
    TimedOut,
    /// An attempt was lost (its worker died or shut down).
    Lost,
}

impl Event {
    /// The event's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failure => "failure",
            Event::Success => "success",
            Event::RetryExhausted => "retry_exhausted",
            Event::TimedOut => "timed_out",
            Event::Lost => "lost",
        }
    }
}

/// The events a run that reached `state` is; `retrying`: another attempt follows.
pub fn events_of(state: RunState, retrying: bool) -> Vec<Event> {
    let mut out = Vec::new();
    match state {
        RunState::Succeeded => out.push(Event::Success),
        RunState::Failed | RunState::TimedOut | RunState::Lost => {
            out.push(Event::Failure);
            if !retrying {
                out.push(Event::RetryExhausted);
            }
            match state {
                RunState::TimedOut => out.push(Event::TimedOut),
                RunState::Lost => out.push(Event::Lost),
                _ => {}
            }
        }
        _ => {}
    }
    out
}

fn default_on() -> Vec<Event> {
    vec![Event::Failure]
}

/// One rule: on which events, to which target (exactly one of `webhook`, `email`, `slack`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRule {
    /// The events that send it (default `[failure]`).
    #[serde(default = "default_on")]
    pub on: Vec<Event>,
    /// POST a signed JSON document to this URL (or `${NAME}`: a variable or secret of the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Send an email to these addresses (needs the server's `--smtp-url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email: Vec<String>,
    /// Post to this Slack incoming-webhook URL (or `${NAME}`, e.g. a secret of the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A signed JSON POST.
    Webhook(String),
    /// An email.
    Email(Vec<String>),
    /// A Slack message.
    Slack(String),
}

impl Target {
    /// `webhook`, `email` or `slack`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook(_) => "webhook",
            Target::Email(_) => "email",
            Target::Slack(_) => "slack",
        }
    }
}

impl NotifyRule {
    /// The rule's one target.
    pub fn target(&self) -> Option<Target> {
        match (&self.webhook, self.email.is_empty(), &self.slack) {
            (Some(u), true, None) => Some(Target::Webhook(u.clone())),
            (None, false, None) => Some(Target::Email(self.email.clone())),
            (None, true, Some(u)) => Some(Target::Slack(u.clone())),
            _ => None,
        }
    }

    /// The events of `events` this rule sends on (empty: it does not send).
    pub fn matching(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .copied()
            .filter(|e| self.on.contains(e))
            .collect()
    }
}

/// A `${NAME}` reference, or an `http(s)://` URL with a host.
fn url_problem(u: &str) -> Option<&'static str> {
    if u.len() > MAX_TARGET {
        return Some("longer than 2048 bytes");
    }
    if u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("must not contain spaces or control characters");
    }
    if let Some(name) = u.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        let plain = !name.is_empty()
            && name.len() <= 256
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return (!plain).then_some("`${NAME}` must name a variable or secret of the job");
    }
    if u.contains("${") {
        return Some("`${NAME}` must be the whole URL (keep the URL with its token in the secret)");
    }
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with(['/', '?', '#']) => None,
        _ => Some(
            "an http:// or https:// URL with a host, or `${NAME}` (a variable or secret of the job)",
        ),
    }
}

/// An email address as notifications accept it: `local@domain`, no spaces, no angle brackets,
/// no line breaks (nothing that could become another header).
pub fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && a.len() <= 254
        && !domain.starts_with(['.', '-'])
        && a.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '\\' | '(' | ')')
        })
}

/// Check a job's rules; errors name `notify[i].<field>`.
pub fn validate(rules: &[NotifyRule]) -> Result<(), ValidationError> {
    if rules.len() > MAX_RULES {
        return Err(ValidationError::new(
            "notify",
            "invalid_value",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        let f = |field: &str| format!("notify[{i}].{field}");
        let bad = |field: &str, m: &str| Err(ValidationError::new(f(field), "invalid_value", m));
        if r.on.is_empty() {
            return bad(
                "on",
                "name at least one event: failure, success, retry_exhausted, timed_out, lost",
            );
        }
        if r.target().is_none() {
            return Err(ValidationError::new(
                format!("notify[{i}]"),
                "invalid_value",
                "give exactly one of `webhook`, `email`, `slack`",
            ));
        }
        if let Some(u) = &r.webhook
            && let Some(p) = url_problem(u)
        {
            return bad("webhook", p);
        }
        if let Some(u) = &r.slack
            && let Some(p) = url_problem(u)
        {
            return bad("slack", p);
        }
        if r.email.len() > MAX_ADDRESSES {
            return bad("email", "at most 20 addresses");
        }
        for (j, a) in r.email.iter().enumerate() {
            if !is_address(a) {
                return Err(ValidationError::new(
                    format!("notify[{i}].email[{j}]"),
                    "invalid_value",
                    format!("`{a}` is not an email address (local@domain)"),
                ));
            }
        }
    }
    Ok(())
}

/// Refuse a `${NAME}` target that names neither a variable nor a secret of the job (`known`
/// tells which names it has).
pub fn check_references(
    rules: &[NotifyRule],
    known: impl Fn(&str) -> bool,
) -> Result<(), ValidationError> {
    for (i, r) in rules.iter().enumerate() {
        for (field, url) in [("webhook", &r.webhook), ("slack", &r.slack)] {
            let Some(name) = url
                .as_deref()
                .and_then(|u| u.strip_prefix("${"))
                .and_then(|r| r.strip_suffix('}'))
            else {
                continue;
            };
            if !known(name) {
                return Err(ValidationError::new(
                    format!("notify[{i}].{field}"),
                    "invalid_value",
                    format!("`${{{name}}}` is neither a variable (`env`) nor a secret of the job"),
                ));
            }
        }
    }
    Ok(())
}

/// The addresses in a job's `owner` (Chronos's "email addresses to send job failure
/// notifications", comma- or space-separated); other words are ignored.
pub fn owner_addresses(owner: &str) -> Vec<String> {
    owner
        .split([',', ' ', ';'])
        .map(str::trim)
        .filter(|a| is_address(a))
        .take(MAX_ADDRESSES)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_each_end() {
        use Event::*;
        assert_eq!(events_of(RunState::Succeeded, false), vec![Success]);
        assert_eq!(events_of(RunState::Failed, true), vec![Failure]);
        assert_eq!(
            events_of(RunState::TimedOut, false),
            vec![Failure, RetryExhausted, TimedOut]
        );
        assert_eq!(events_of(RunState::Lost, true), vec![Failure, Lost]);
        assert!(events_of(RunState::Cancelled, false).is_empty());
        assert!(events_of(RunState::Skipped, false).is_empty());
    }

    #[test]
    fn rules_are_checked_and_named() {
        let rules =
            |j: serde_json::Value| -> Vec<NotifyRule> { serde_json::from_value(j).unwrap() };
        let ok = rules(serde_json::json!([
            {"webhook": "https://hooks.example.com/x"},
            {"on": ["success", "lost"], "email": ["ops@example.com"]},
            {"slack": "${SLACK_URL}"}
        ]));
        assert_eq!(validate(&ok), Ok(()));
        assert_eq!(ok[0].on, vec![Event::Failure]);
        assert_eq!(
            ok[1].matching(&[Event::Failure, Event::Lost]),
            vec![Event::Lost]
        );
        let field = |j: serde_json::Value| validate(&rules(j)).unwrap_err().field;
        assert_eq!(
            field(serde_json::json!([{"on": [], "webhook": "http://a"}])),
            "notify[0].on"
        );
        assert_eq!(
            field(serde_json::json!([{"webhook": "http://a", "slack": "http://b"}])),
            "notify[0]"
        );
        assert_eq!(field(serde_json::json!([{}])), "notify[0]");
        assert_eq!(
            field(serde_json::json!([{"webhook": "ftp://x"}])),
            "notify[0].webhook"
        );
        assert_eq!(
            field(serde_json::json!([{"slack": "${not ok}"}])),
            "notify[0].slack"
        );
        assert_eq!(
            field(serde_json::json!([{"email": ["a@b.c", "x@y.z\r\nBcc: evil@x.y"]}])),
            "notify[0].email[1]"
        );
        assert!(
            serde_json::from_value::<Vec<NotifyRule>>(
                serde_json::json!([{"on": ["often"], "webhook": "http://a"}])
            )
            .is_err()
        );
    }

    #[test]
    fn owner_addresses_are_the_email_words() {
        assert_eq!(
            owner_addresses("ops@example.com, Jane Doe jane@example.org;bad@"),
            vec!["ops@example.com".to_owned(), "jane@example.org".to_owned()]
        );
        assert!(owner_addresses("team-data").is_empty());
    }
}
