//! Checks on a webhook body before it is parsed: content type, emptiness, nesting depth.

use axum::http::{HeaderMap, StatusCode};

use super::WhatsAppError;

/// Refuse what is not a JSON object of sane depth. A missing content type is accepted (the
/// Coreapp's headers are not documented); a present one must be JSON.
pub fn check(headers: &HeaderMap, body: &[u8], max_depth: usize) -> Result<(), WhatsAppError> {
    if let Some(ct) = headers.get("content-type") {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(WhatsAppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                format!("content type {essence:?} is not application/json"),
            ));
        }
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(WhatsAppError::bad_request(
            400,
            "Malformed JSON",
            "the body is empty".into(),
        )),
        Some(b'{') if exceeds_depth(body, max_depth) => Err(WhatsAppError::bad_request(
            400,
            "Malformed JSON",
            format!("JSON nested deeper than {max_depth} levels"),
        )),
        Some(b'{') => Ok(()),
        Some(_) => Err(WhatsAppError::bad_request(
            1009,
            "Invalid webhook body",
            "the body is not a JSON object".into(),
        )),
    }
}

/// Whether objects and arrays nest deeper than `max` (strings are skipped; the JSON need not
/// be valid: the parser judges that afterwards).
pub fn exceeds_depth(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        h
    }

    #[test]
    fn depth_counts_containers_outside_strings() {
        assert!(!exceeds_depth(br#"{"a":[{"b":1}]}"#, 3));
        assert!(exceeds_depth(br#"{"a":[{"b":[]}]}"#, 3));
        assert!(!exceeds_depth(br#"{"a":"[[[[[[\"{{{{"}"#, 1));
    }

    #[test]
    fn refuses_bad_bodies_with_the_right_status() {
        let status = |h: &HeaderMap, b: &[u8]| check(h, b, 4).err().map(|e| e.status());
        assert_eq!(status(&json(), b"{}"), None);
        assert_eq!(
            status(&HeaderMap::new(), b"{}"),
            None,
            "no content type is accepted"
        );
        let mut text = HeaderMap::new();
        text.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(
            status(&text, b"{}"),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        assert_eq!(status(&json(), b"  "), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(&json(), b"[]"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(&json(), b"{\"a\":[[[[[1]]]]]}"),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
