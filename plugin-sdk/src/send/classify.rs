//! What to do about a failed send: WhatsApp's error codes (in a send's response, or in a
//! `failed` status later) mapped to give up, slow down, back off one recipient, or retry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An error WhatsApp gave for a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiError {
    /// The error code, as `131047`.
    pub code: i64,
    /// Its title (the Cloud API's `message` when there is no title).
    pub title: String,
    /// Further details, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ApiError {
    /// An error with this code and title.
    pub fn new(code: i64, title: impl Into<String>) -> Self {
        ApiError {
            code,
            title: title.into(),
            details: None,
        }
    }

    /// The first error of a failed send's response body: Cloud `{"error":{...}}` or
    /// On-Premises `{"errors":[{...}]}`. `None` when the body holds neither.
    ///
    /// ```
    /// use switchboard_sdk::send::ApiError;
    ///
    /// let body = br#"{"errors":[{"code":470,"title":"Message failed to send because more than 24 hours have passed"}]}"#;
    /// assert_eq!(ApiError::from_body(body).map(|e| e.code), Some(470));
    /// ```
    pub fn from_body(body: &[u8]) -> Option<ApiError> {
        let body: Value = serde_json::from_slice(body).ok()?;
        match (body.get("error"), body.get("errors")) {
            (Some(error), _) => ApiError::from_json(error),
            (None, Some(Value::Array(errors))) => errors.first().and_then(ApiError::from_json),
            _ => None,
        }
    }

    /// One error object, as in a response or in the `errors[]` of a `failed` status:
    /// `code`, `title` or `message`, and `details` or `error_data.details`. The code may be a
    /// number or a numeric string.
    pub fn from_json(error: &Value) -> Option<ApiError> {
        let code = match error.get("code")? {
            Value::Number(code) => code.as_i64()?,
            Value::String(code) => code.trim().parse().ok()?,
            _ => return None,
        };
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
        let details = text("details").or_else(|| {
            error
                .pointer("/error_data/details")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        Some(ApiError {
            code,
            title: text("title")
                .or_else(|| text("message"))
                .unwrap_or_default(),
            details,
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WhatsApp error {}: {}", self.code, self.title)?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        Ok(())
    }
}

/// What the sender does about a failed send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Not retried: dead-letter the send with its code and title. The operator may queue it
    /// again once the cause is fixed.
    DeadLetter {
        /// WhatsApp's error code, when it gave one.
        code: Option<i64>,
        /// WhatsApp's title, or what the code or HTTP status means.
        title: String,
        /// Why it is not retried.
        reason: DeadLetterReason,
    },
    /// The business number's throughput is reached: send slower from it, then retry.
    PaceDown {
        /// WhatsApp's error code.
        code: i64,
        /// The `Retry-After` the API asked for.
        retry_after: Option<Duration>,
    },
    /// Too many messages to this one customer: back off this recipient only, for
    /// [`recipient_backoff`] of its attempts; sends to others go on.
    BackOffRecipient {
        /// WhatsApp's error code.
        code: i64,
    },
    /// The number's spam-rate limit: pause sending from it and alert the operator.
    PauseNumber {
        /// WhatsApp's error code.
        code: i64,
        /// WhatsApp's title, or what the code means.
        title: String,
    },
    /// A passing failure: retry with back-off, not before `after` when given.
    Retry {
        /// The least wait: `Retry-After`, or what the error calls for.
        after: Option<Duration>,
    },
}

/// Why a send is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// More than 24 hours since the customer's last message, and the send is not a template
    /// (131047 Cloud, 470 On-Premises).
    WindowClosed,
    /// The customer cannot receive it: not on WhatsApp, an old app, or blocked (131026).
    Undeliverable,
    /// A parameter value WhatsApp does not accept (131009).
    InvalidParameter,
    /// Not delivered to keep the ecosystem healthy (131049); a quick retry does not help.
    EcosystemHealth,
    /// Refused for another reason (an error code or HTTP status not listed above).
    Rejected,
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadLetterReason::WindowClosed => {
                "the customer's 24-hour window is closed: send a template, or wait for the customer to write"
            }
            DeadLetterReason::Undeliverable => {
                "the customer cannot receive it (not on WhatsApp, an old app, or blocked)"
            }
            DeadLetterReason::InvalidParameter => {
                "WhatsApp does not accept a value of the send: correct it and queue it again"
            }
            DeadLetterReason::EcosystemHealth => {
                "WhatsApp held it back to keep the ecosystem healthy: do not retry soon"
            }
            DeadLetterReason::Rejected => "WhatsApp refused it: see the error code and title",
        })
    }
}

/// How long the On-Premises API's "too many requests" and "overloaded" answers call for.
const COREAPP_PAUSE: Duration = Duration::from_secs(2);
/// How long a number's maintenance (131057, a throughput upgrade) takes, about.
const MAINTENANCE: Duration = Duration::from_secs(60);

/// What to do about a failed send, from WhatsApp's error (the response's, or a `failed`
/// status's), the HTTP status (`None` for a timeout or connection error, or for a status
/// webhook) and the response's `Retry-After`. A known error code decides first; then the HTTP
/// status: 408, 429 and 5xx are retried, other 4xx are dead-lettered. No answer at all (timeout)
/// is retried; an unknown code in a `failed` status is dead-lettered.
///
/// ```
/// use switchboard_sdk::send::{classify, ApiError, DeadLetterReason, Outcome};
///
/// let error = ApiError::new(131047, "Re-engagement message");
/// assert_eq!(
///     classify(Some(400), Some(&error), None),
///     Outcome::DeadLetter { code: Some(131047), title: "Re-engagement message".into(), reason: DeadLetterReason::WindowClosed },
/// );
/// assert_eq!(classify(Some(503), None, None), Outcome::Retry { after: Some(std::time::Duration::from_secs(2)) });
/// ```
pub fn classify(
    http_status: Option<u16>,
    error: Option<&ApiError>,
    retry_after: Option<Duration>,
) -> Outcome {
    if let Some(error) = error
        && let Some(outcome) = classify_code(error, retry_after)
    {
        return outcome;
    }
    let code = error.map(|e| e.code);
    let title = |fallback: String| match error {
        Some(e) if !e.title.is_empty() => e.title.clone(),
        _ => fallback,
    };
    match http_status {
        // The Coreapp's rate limit and overload: it asks for a pause of its own.
        Some(429 | 503) => Outcome::Retry {
            after: Some(retry_after.unwrap_or(COREAPP_PAUSE)),
        },
        Some(408 | 500..=599) => Outcome::Retry { after: retry_after },
        Some(status) => Outcome::DeadLetter {
            code,
            title: title(format!("HTTP {status}")),
            reason: DeadLetterReason::Rejected,
        },
        None if error.is_none() => Outcome::Retry { after: retry_after },
        None => Outcome::DeadLetter {
            code,
            title: title("the message failed".into()),
            reason: DeadLetterReason::Rejected,
        },
    }
}

/// The outcome of the error codes the reference lists; `None` for others.
fn classify_code(error: &ApiError, retry_after: Option<Duration>) -> Option<Outcome> {
    let code = error.code;
    let title = |meaning: &str| {
        if error.title.is_empty() {
            meaning.to_string()
        } else {
            error.title.clone()
        }
    };
    let dead = |reason, meaning: &str| Outcome::DeadLetter {
        code: Some(code),
        title: title(meaning),
        reason,
    };
    Some(match code {
        131047 | 470 => dead(
            DeadLetterReason::WindowClosed,
            "more than 24 hours since the customer's last message",
        ),
        131026 => dead(DeadLetterReason::Undeliverable, "message undeliverable"),
        131009 => dead(
            DeadLetterReason::InvalidParameter,
            "invalid parameter value",
        ),
        131049 => dead(
            DeadLetterReason::EcosystemHealth,
            "not delivered to maintain a healthy ecosystem",
        ),
        // Throughput per number, and the account's and app's call rates: slow down.
        130429 | 80007 | 4 => Outcome::PaceDown { code, retry_after },
        131056 => Outcome::BackOffRecipient { code },
        131048 | 471 => Outcome::PauseNumber {
            code,
            title: title("spam rate limit hit"),
        },
        131057 => Outcome::Retry {
            after: Some(retry_after.unwrap_or(MAINTENANCE).max(MAINTENANCE)),
        },
        // The Coreapp's "too many requests" (also given as codes 429 and 503).
        1015 | 429 | 503 => Outcome::Retry {
            after: Some(retry_after.unwrap_or(COREAPP_PAUSE)),
        },
        _ => return None,
    })
}

/// How long to hold back sends to one recipient after its `attempt`-th pair-rate-limit error
/// in a row (from 0): 4^n seconds, 1, 4, 16, 64, then 256 for every later one.
///
/// ```
/// use std::time::Duration;
/// use switchboard_sdk::send::recipient_backoff;
///
/// assert_eq!(recipient_backoff(2), Duration::from_secs(16));
/// assert_eq!(recipient_backoff(9), Duration::from_secs(256));
/// ```
pub fn recipient_backoff(attempt: u32) -> Duration {
    Duration::from_secs(4u64.pow(attempt.min(4)))
}
