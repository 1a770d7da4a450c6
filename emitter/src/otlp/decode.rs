//! OTLP/HTTP bodies in and out: the content type, gzip with a cap on the
//! decoded size, protobuf or OTLP/JSON into the `opentelemetry-proto` types,
//! and the answers (the signal's `Export*ServiceResponse` with its partial
//! success, or a `google.rpc.Status` for an error) in the request's format.
//!
//! The JSON side is `opentelemetry-proto`'s `with-serde`: lowerCamelCase
//! keys, 64-bit integers as strings or numbers, trace and span ids as hex,
//! unknown keys ignored, as the OTLP/JSON encoding says. Nesting is bounded
//! by the decoders themselves (serde_json at 128 levels, prost at 100), so
//! a deeply nested body is a 400, never a stack overflow.

use std::io::Read;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::map::{self, Record};

/// The three signals, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `POST /v1/logs`.
    Logs,
    /// `POST /v1/metrics`.
    Metrics,
    /// `POST /v1/traces`.
    Traces,
}

impl Signal {
    /// The signal served at `path`.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/logs" => Some(Self::Logs),
            "/v1/metrics" => Some(Self::Metrics),
            "/v1/traces" => Some(Self::Traces),
            _ => None,
        }
    }

    /// The name used in logs and in `GET /stats`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Metrics => "metrics",
            Self::Traces => "traces",
        }
    }
}

/// The two body encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Format {
    /// From a `Content-Type` header (parameters such as `charset` ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of answers in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Decoded past the cap (a gzip bomb, or simply too much): 413.
    #[error("the decoded body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not gzip, not protobuf, not OTLP/JSON: 400.
    #[error("{0}")]
    Bad(String),
}

/// Inflates a gzip body, refusing to produce more than `cap` bytes.
pub fn gunzip(body: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Bad(format!("the body is not valid gzip: {e}")))?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge(cap));
    }
    Ok(out)
}

/// The records of one request body.
pub fn records(signal: Signal, format: Format, body: &[u8]) -> Result<Vec<Record>, DecodeError> {
    match signal {
        Signal::Logs => decode::<ExportLogsServiceRequest>(format, body).map(|r| map::logs(&r)),
        Signal::Metrics => {
            decode::<ExportMetricsServiceRequest>(format, body).map(|r| map::metrics(&r))
        }
        Signal::Traces => {
            decode::<ExportTraceServiceRequest>(format, body).map(|r| map::traces(&r))
        }
    }
}

fn decode<T>(format: Format, body: &[u8]) -> Result<T, DecodeError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    match format {
        Format::Protobuf => T::decode(body).map_err(|e| {
            DecodeError::Bad(format!("the body is not an OTLP protobuf message: {e}"))
        }),
        Format::Json => serde_json::from_slice(body)
            .map_err(|e| DecodeError::Bad(format!("the body is not OTLP/JSON: {e}"))),
    }
}

/// The success answer, with a partial success when records were rejected.
pub fn answer(signal: Signal, format: Format, rejected: u64, message: &str) -> Bytes {
    if format == Format::Json {
        // By hand: OTLP/JSON writes int64 as a string and leaves an absent
        // partial success out, where serde would write a number and `null`.
        let key = match signal {
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
            Signal::Traces => "rejectedSpans",
        };
        let body = if rejected == 0 {
            serde_json::json!({})
        } else {
            serde_json::json!({"partialSuccess": {key: rejected.to_string(), "errorMessage": message}})
        };
        return Bytes::from(body.to_string());
    }
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    let message = if rejected > 0 {
        message.to_owned()
    } else {
        String::new()
    };
    let partial = rejected > 0;
    match signal {
        Signal::Logs => encode(
            format,
            &ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                }),
            },
        ),
        Signal::Metrics => encode(
            format,
            &ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                }),
            },
        ),
        Signal::Traces => encode(
            format,
            &ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                }),
            },
        ),
    }
}

fn encode<T: Message + serde::Serialize>(format: Format, msg: &T) -> Bytes {
    match format {
        Format::Protobuf => Bytes::from(msg.encode_to_vec()),
        Format::Json => Bytes::from(serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec())),
    }
}

/// `google.rpc.Status`, the body of an OTLP error answer.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC code `INVALID_ARGUMENT`, for bodies that cannot be decoded.
pub const INVALID_ARGUMENT: i32 = 3;
/// gRPC code `RESOURCE_EXHAUSTED`, for overload and size.
pub const RESOURCE_EXHAUSTED: i32 = 8;
/// gRPC code `UNAUTHENTICATED`.
pub const UNAUTHENTICATED: i32 = 16;
/// gRPC code `UNIMPLEMENTED`, for unknown paths and media types.
pub const UNIMPLEMENTED: i32 = 12;
/// gRPC code `UNAVAILABLE`.
pub const UNAVAILABLE: i32 = 14;

/// An error body in `format`.
pub fn status(format: Format, code: i32, message: &str) -> Bytes {
    match format {
        Format::Protobuf => Bytes::from(
            Status {
                code,
                message: message.to_owned(),
            }
            .encode_to_vec(),
        ),
        Format::Json => {
            Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = enc.write_all(data);
        enc.finish().unwrap_or_default()
    }

    #[test]
    fn content_types_with_parameters() {
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("Application/X-Protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
    }

    #[test]
    fn gunzip_stops_at_the_cap() {
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 10_000);
        assert_eq!(gunzip(&bomb, 1000), Err(DecodeError::TooLarge(1000)));
        assert_eq!(gunzip(&bomb, 1 << 20).map(|v| v.len()), Ok(1 << 20));
        assert!(matches!(
            gunzip(b"not gzip", 1000),
            Err(DecodeError::Bad(_))
        ));
    }

    #[test]
    fn json_ids_are_hex_and_ints_may_be_strings() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"chat","startTimeUnixNano":"1544712660000000000",
            "attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
                          {"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}}]}]}]}]}"#;
        let recs = records(Signal::Traces, Format::Json, body).unwrap_or_default();
        assert_eq!(recs.len(), 1);
        let Some(map::Fact::Request(u)) = &recs[0].fact else {
            panic!("no request in {recs:?}");
        };
        assert_eq!(u.input, 12);
        assert!(recs[0].span.is_some());
    }

    #[test]
    fn deep_json_is_a_clean_error() {
        let deep = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}1{}}}]}}]}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(5000),
            "]}}".repeat(5000)
        );
        assert!(matches!(
            records(Signal::Logs, Format::Json, deep.as_bytes()),
            Err(DecodeError::Bad(_))
        ));
    }

    #[test]
    fn truncated_protobuf_is_a_clean_error() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![Default::default(); 3],
        };
        let bytes = req.encode_to_vec();
        assert!(bytes.len() > 2);
        let mut bad = bytes.clone();
        bad.truncate(bytes.len() - 1);
        bad.push(0xff);
        assert!(matches!(
            records(Signal::Logs, Format::Protobuf, &bad),
            Err(DecodeError::Bad(_))
        ));
    }
}
