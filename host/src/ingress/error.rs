use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered in the WhatsApp shape: `{"errors":[{"code","title","details"}]}`.
#[derive(Debug)]
pub struct WhatsAppError {
    status: StatusCode,
    code: u32,
    title: &'static str,
    details: String,
}

impl WhatsAppError {
    /// An error whose code is the HTTP status.
    pub fn new(status: StatusCode, title: &'static str, details: String) -> Self {
        WhatsAppError {
            status,
            code: status.as_u16() as u32,
            title,
            details,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong, as answered.
    pub fn details(&self) -> &str {
        &self.details
    }

    /// A 400 with a WhatsApp error code.
    pub fn bad_request(code: u32, title: &'static str, details: String) -> Self {
        WhatsAppError {
            status: StatusCode::BAD_REQUEST,
            code,
            title,
            details,
        }
    }
}

impl IntoResponse for WhatsAppError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code, "title": self.title, "details": self.details }]
        });
        (
            self.status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
