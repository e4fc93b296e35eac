//! HTTP responses of the stand-in: JSON, plain bytes and `Status` errors.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::error::ApiError;

/// Response body type.
pub type Body = BoxBody<Bytes, Infallible>;

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    bytes_response(code, "application/json", Bytes::from(v.to_string()))
}

/// A response with content type `ct`.
pub fn bytes_response(code: u16, ct: &str, b: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(b).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The `Status` response for an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status())
}
