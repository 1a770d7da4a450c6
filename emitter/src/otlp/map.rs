//! What an OTLP record means for `agents[i].activity`: one pure walk over a
//! decoded request that turns every log record, data point and span into a
//! [`Record`] (its job attribute, service, session and at most one [`Fact`]).
//!
//! The table in docs/REFERENCE.md ("Agent telemetry over OTLP") is this
//! file in prose; keep them together. What the agents really send was read
//! from captured payloads of Claude Code 2.1.328 and Codex CLI 0.171.0:
//! - Claude Code names its events in the body (`claude_code.api_request`)
//!   and in `event.name` (`api_request`); numbers come as ints, doubles or
//!   digit strings (`tool_result` sends `success: "true"`, `duration_ms: "79"`).
//! - Codex CLI names them in `event.name` (`codex.sse_event`); a completed
//!   request is the `response.completed` SSE event that carries
//!   `input_token_count`, the session is `conversation.id`.
//! - The GenAI conventions put `gen_ai.operation.name` and `gen_ai.usage.*`
//!   on spans or on events; both may describe the same call, so records that
//!   name a span carry its id and the store counts each span once.

use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// The attribute that names the job, at resource, scope or record level.
pub const JOB_ATTRIBUTE: &str = "orchestrator.job_id";

/// Longest name, session or service kept, in bytes (longer ones are cut).
pub const MAX_TEXT: usize = 256;

/// One log record, data point or span, as far as activity is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What `orchestrator.job_id` says, innermost level first.
    pub job: JobAttr,
    /// `service.name` of the resource.
    pub service: Option<String>,
    /// `session.id` or `conversation.id`.
    pub session: Option<String>,
    /// What it counts for, if anything.
    pub fact: Option<Fact>,
    /// A fingerprint of the span the record describes (GenAI records only):
    /// a span and an event about the same span count once.
    pub span: Option<u64>,
}

/// The job attribute of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAttr {
    /// No `orchestrator.job_id` anywhere.
    Absent,
    /// An integer or digits.
    Id(i64),
    /// Present but neither an integer nor digits.
    Invalid,
}

/// What a record counts for.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A model API request that completed.
    Request(Usage),
    /// Model API requests that failed: this many attempts.
    Error(u64),
    /// A tool call that completed.
    Tool {
        /// Its name.
        name: String,
        /// Reported as failed.
        failed: bool,
        /// Tool name and parameters (or input size), hashed.
        fingerprint: u64,
    },
    /// A metric data point (used only where no event carried the same figure).
    Metric {
        /// Which figure.
        kind: MetricKind,
        /// The point's value.
        value: f64,
        /// For a cumulative point, its series (metric, attributes, start
        /// time) so that only the increase counts; `None` for a delta.
        series: Option<u64>,
    },
}

/// Tokens and cost of one completed request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cache-read tokens.
    pub cache_read: u64,
    /// Cache-creation tokens.
    pub cache_creation: u64,
    /// Whether any token figure was sent at all.
    pub has_tokens: bool,
    /// The cost the agent reported.
    pub cost: Option<f64>,
}

/// Which figure a metric point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Tokens of one kind.
    Tokens(TokenKind),
    /// Cost in USD.
    Cost,
}

/// The four token figures of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `input_tokens`.
    Input,
    /// `output_tokens`.
    Output,
    /// `cache_read_tokens`.
    CacheRead,
    /// `cache_creation_tokens`.
    CacheCreation,
}

/// Attributes of the enclosing resource and scope.
struct Context<'a> {
    resource: &'a [KeyValue],
    scope: &'a [KeyValue],
    scope_name: &'a str,
    service: Option<String>,
}

impl<'a> Context<'a> {
    fn new(resource: &'a [KeyValue], scope: &'a [KeyValue], scope_name: &'a str) -> Self {
        Self {
            resource,
            scope,
            scope_name,
            service: find(resource, "service.name").and_then(text),
        }
    }

    fn record(&self, attrs: &[KeyValue], fact: Option<Fact>, span: Option<u64>) -> Record {
        let session = ["session.id", "conversation.id"]
            .iter()
            .find_map(|k| self.lookup(attrs, k))
            .and_then(text);
        Record {
            job: self
                .lookup(attrs, JOB_ATTRIBUTE)
                .map_or(JobAttr::Absent, parse_job),
            service: self.service.clone(),
            session,
            fact,
            span,
        }
    }

    /// Record level first, then scope, then resource.
    fn lookup<'v>(&'v self, attrs: &'v [KeyValue], key: &str) -> Option<&'v Value> {
        find(attrs, key)
            .or_else(|| find(self.scope, key))
            .or_else(|| find(self.resource, key))
    }

    fn is_claude(&self) -> bool {
        self.scope_name.starts_with("com.anthropic.claude_code")
            || self.service.as_deref() == Some("claude-code")
    }
}

/// Every log record of `req`.
pub fn logs(req: &ExportLogsServiceRequest) -> Vec<Record> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let resource = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        for sl in &rl.scope_logs {
            let (scope, scope_name) = sl
                .scope
                .as_ref()
                .map_or((&[][..], ""), |s| (&s.attributes[..], s.name.as_str()));
            let ctx = Context::new(resource, scope, scope_name);
            for lr in &sl.log_records {
                let body = match lr.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(Value::StringValue(s)) if s.len() <= MAX_TEXT => Some(s.as_str()),
                    _ => None,
                };
                let names = [
                    Some(lr.event_name.as_str()),
                    find(&lr.attributes, "event.name").and_then(as_str),
                    body,
                ];
                let attrs = &lr.attributes[..];
                let (fact, span) = if let Some(op) = find(attrs, "gen_ai.operation.name") {
                    let failed = find(attrs, "error.type").is_some();
                    (
                        genai(op, attrs, failed),
                        span_key(&lr.trace_id, &lr.span_id),
                    )
                } else {
                    (event(&ctx, &names, attrs), None)
                };
                out.push(ctx.record(attrs, fact, span));
            }
        }
    }
    out
}

/// Every span of `req`.
pub fn traces(req: &ExportTraceServiceRequest) -> Vec<Record> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        for ss in &rs.scope_spans {
            let (scope, scope_name) = ss
                .scope
                .as_ref()
                .map_or((&[][..], ""), |s| (&s.attributes[..], s.name.as_str()));
            let ctx = Context::new(resource, scope, scope_name);
            for span in &ss.spans {
                let attrs = &span.attributes[..];
                let fact = find(attrs, "gen_ai.operation.name").and_then(|op| {
                    let failed = span
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == StatusCode::Error as i32)
                        || find(attrs, "error.type").is_some();
                    genai(op, attrs, failed)
                });
                let key = fact
                    .as_ref()
                    .and_then(|_| span_key(&span.trace_id, &span.span_id));
                out.push(ctx.record(attrs, fact, key));
            }
        }
    }
    out
}

/// Every data point of `req`.
pub fn metrics(req: &ExportMetricsServiceRequest) -> Vec<Record> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let resource = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        for sm in &rm.scope_metrics {
            let (scope, scope_name) = sm
                .scope
                .as_ref()
                .map_or((&[][..], ""), |s| (&s.attributes[..], s.name.as_str()));
            let ctx = Context::new(resource, scope, scope_name);
            for metric in &sm.metrics {
                metric_points(&ctx, metric, &mut out);
            }
        }
    }
    out
}

/// Cumulative, in the OTLP enum.
const CUMULATIVE: i32 = 2;

fn metric_points(
    ctx: &Context<'_>,
    metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
    out: &mut Vec<Record>,
) {
    let name = metric.name.as_str();
    match &metric.data {
        Some(Data::Sum(sum)) => {
            for p in &sum.data_points {
                let value = match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    #[allow(clippy::cast_precision_loss)]
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => f64::NAN,
                };
                let kind = match name {
                    "claude_code.cost.usage" => Some(MetricKind::Cost),
                    "claude_code.token.usage" => find(&p.attributes, "type")
                        .and_then(as_str)
                        .and_then(claude_token_kind)
                        .map(MetricKind::Tokens),
                    _ => None,
                };
                let cumulative = sum.aggregation_temporality == CUMULATIVE;
                let fact = point_fact(
                    kind,
                    value,
                    cumulative,
                    name,
                    &p.attributes,
                    p.start_time_unix_nano,
                );
                out.push(ctx.record(&p.attributes, fact, None));
            }
        }
        Some(Data::Histogram(h)) => {
            for p in &h.data_points {
                let kind = (name == "gen_ai.client.token.usage")
                    .then(|| find(&p.attributes, "gen_ai.token.type").and_then(as_str))
                    .flatten()
                    .and_then(genai_token_kind)
                    .map(MetricKind::Tokens);
                let cumulative = h.aggregation_temporality == CUMULATIVE;
                let fact = point_fact(
                    kind,
                    p.sum.unwrap_or(f64::NAN),
                    cumulative,
                    name,
                    &p.attributes,
                    p.start_time_unix_nano,
                );
                out.push(ctx.record(&p.attributes, fact, None));
            }
        }
        Some(Data::Gauge(g)) => {
            for p in &g.data_points {
                out.push(ctx.record(&p.attributes, None, None));
            }
        }
        Some(Data::ExponentialHistogram(h)) => {
            for p in &h.data_points {
                out.push(ctx.record(&p.attributes, None, None));
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                out.push(ctx.record(&p.attributes, None, None));
            }
        }
        None => {}
    }
}

fn point_fact(
    kind: Option<MetricKind>,
    value: f64,
    cumulative: bool,
    name: &str,
    attrs: &[KeyValue],
    start: u64,
) -> Option<Fact> {
    let kind = kind?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let series = cumulative.then(|| {
        let mut h = std::hash::DefaultHasher::new();
        name.hash(&mut h);
        start.hash(&mut h);
        // Attribute order is the sender's; the series is the set.
        let mut keys: Vec<u64> = attrs.iter().map(kv_hash).collect();
        keys.sort_unstable();
        keys.hash(&mut h);
        h.finish()
    });
    Some(Fact::Metric {
        kind,
        value,
        series,
    })
}

fn kv_hash(kv: &KeyValue) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    kv.key.hash(&mut h);
    hash_value(kv.value.as_ref(), &mut h, 0);
    h.finish()
}

fn hash_value(v: Option<&AnyValue>, h: &mut impl Hasher, depth: u32) {
    // Decoders already bound the nesting; this bound keeps the hash cheap.
    if depth > 8 {
        return;
    }
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.hash(h),
        Some(Value::BoolValue(b)) => b.hash(h),
        Some(Value::IntValue(i)) => i.hash(h),
        Some(Value::DoubleValue(d)) => d.to_bits().hash(h),
        Some(Value::BytesValue(b)) => b.hash(h),
        Some(Value::ArrayValue(a)) => {
            for v in &a.values {
                hash_value(Some(v), h, depth + 1);
            }
        }
        Some(Value::KvlistValue(kv)) => {
            for kv in &kv.values {
                kv.key.hash(h);
                hash_value(kv.value.as_ref(), h, depth + 1);
            }
        }
        Some(Value::StringValueStrindex(i)) => i.hash(h),
        None => 0u8.hash(h),
    }
}

fn claude_token_kind(t: &str) -> Option<TokenKind> {
    match t {
        "input" => Some(TokenKind::Input),
        "output" => Some(TokenKind::Output),
        "cacheRead" => Some(TokenKind::CacheRead),
        "cacheCreation" => Some(TokenKind::CacheCreation),
        _ => None,
    }
}

fn genai_token_kind(t: &str) -> Option<TokenKind> {
    match t {
        "input" => Some(TokenKind::Input),
        "output" => Some(TokenKind::Output),
        _ => None,
    }
}

/// A named event of Claude Code or Codex CLI.
fn event(ctx: &Context<'_>, names: &[Option<&str>], attrs: &[KeyValue]) -> Option<Fact> {
    for name in names.iter().flatten() {
        let name = match name.strip_prefix("claude_code.") {
            Some(bare) => Dialect::Claude(bare),
            None => match name.strip_prefix("codex.") {
                Some(bare) => Dialect::Codex(bare),
                // Claude Code's `event.name` is bare (`api_request`).
                None if ctx.is_claude() => Dialect::Claude(name),
                None => continue,
            },
        };
        match name {
            Dialect::Claude("api_request") => return Some(Fact::Request(claude_usage(attrs))),
            Dialect::Claude("api_error") => {
                // One record once the retries are exhausted; `attempt` says
                // how many attempts failed.
                let attempts = find(attrs, "attempt").and_then(uint).filter(|n| *n > 0);
                return Some(Fact::Error(attempts.unwrap_or(1).min(1000)));
            }
            Dialect::Claude("tool_result") | Dialect::Codex("tool_result") => {
                return tool(attrs);
            }
            Dialect::Codex("sse_event") => return codex_sse(attrs),
            Dialect::Codex("api_request") => {
                // The HTTP exchange; the request completes with its SSE event.
                let status = find(attrs, "http.response.status_code").and_then(uint);
                let failed =
                    status.is_some_and(|s| s >= 400) || find(attrs, "error.message").is_some();
                return failed.then_some(Fact::Error(1));
            }
            _ => {}
        }
    }
    None
}

enum Dialect<'a> {
    Claude(&'a str),
    Codex(&'a str),
}

fn claude_usage(attrs: &[KeyValue]) -> Usage {
    let get = |k| find(attrs, k).and_then(uint);
    let (input, output, cache_read, cache_creation) = (
        get("input_tokens"),
        get("output_tokens"),
        get("cache_read_tokens"),
        get("cache_creation_tokens"),
    );
    Usage {
        has_tokens: input.is_some()
            || output.is_some()
            || cache_read.is_some()
            || cache_creation.is_some(),
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        cache_read: cache_read.unwrap_or(0),
        cache_creation: cache_creation.unwrap_or(0),
        cost: find(attrs, "cost_usd")
            .and_then(num)
            .filter(|c| c.is_finite() && *c >= 0.0),
    }
}

fn codex_sse(attrs: &[KeyValue]) -> Option<Fact> {
    let kind = find(attrs, "event.kind").and_then(as_str);
    if find(attrs, "error.message").is_some() || kind == Some("response.failed") {
        return Some(Fact::Error(1));
    }
    // Codex sends `response.completed` twice: once timed, once with the
    // usage; only the one with the usage is the completed request.
    let input = find(attrs, "input_token_count").and_then(uint)?;
    if kind.is_some_and(|k| k != "response.completed") {
        return None;
    }
    let get = |k| find(attrs, k).and_then(uint).unwrap_or(0);
    Some(Fact::Request(Usage {
        input,
        output: get("output_token_count"),
        cache_read: get("cached_token_count"),
        cache_creation: get("cache_write_token_count"),
        has_tokens: true,
        cost: None,
    }))
}

/// A completed tool call: Claude Code's and Codex CLI's `tool_result`.
fn tool(attrs: &[KeyValue]) -> Option<Fact> {
    let name = find(attrs, "tool_name").and_then(text)?;
    let failed = find(attrs, "success")
        .and_then(boolean)
        .is_some_and(|ok| !ok);
    // Parameters when the agent sends them (Claude Code with
    // OTEL_LOG_TOOL_DETAILS=1, Codex always), else the input size.
    let params = ["tool_parameters", "tool_input", "arguments"]
        .iter()
        .find_map(|k| find(attrs, k));
    let size = find(attrs, "tool_input_size_bytes").and_then(uint);
    Some(Fact::Tool {
        fingerprint: fingerprint(&name, params, size),
        name,
        failed,
    })
}

/// A GenAI operation (span or event).
fn genai(op: &Value, attrs: &[KeyValue], failed: bool) -> Option<Fact> {
    let op = as_str(op)?;
    match op {
        "chat" | "text_completion" | "generate_content" | "embeddings" => {
            if failed {
                return Some(Fact::Error(1));
            }
            let get = |k| find(attrs, k).and_then(uint);
            let (input, output, cache_read, cache_creation) = (
                get("gen_ai.usage.input_tokens"),
                get("gen_ai.usage.output_tokens"),
                get("gen_ai.usage.cache_read.input_tokens"),
                get("gen_ai.usage.cache_creation.input_tokens"),
            );
            Some(Fact::Request(Usage {
                has_tokens: input.is_some() || output.is_some(),
                input: input.unwrap_or(0),
                output: output.unwrap_or(0),
                cache_read: cache_read.unwrap_or(0),
                cache_creation: cache_creation.unwrap_or(0),
                cost: None,
            }))
        }
        "execute_tool" => {
            let name = find(attrs, "gen_ai.tool.name").and_then(text)?;
            let params = find(attrs, "gen_ai.tool.call.arguments");
            Some(Fact::Tool {
                fingerprint: fingerprint(&name, params, None),
                name,
                failed,
            })
        }
        _ => None,
    }
}

fn fingerprint(name: &str, params: Option<&Value>, size: Option<u64>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    match params {
        Some(v) => {
            1u8.hash(&mut h);
            hash_value(
                Some(&AnyValue {
                    value: Some(v.clone()),
                }),
                &mut h,
                0,
            );
        }
        None => {
            2u8.hash(&mut h);
            size.hash(&mut h);
        }
    }
    h.finish()
}

fn span_key(trace: &[u8], span: &[u8]) -> Option<u64> {
    if span.is_empty() || span.iter().all(|b| *b == 0) {
        return None;
    }
    let mut h = std::hash::DefaultHasher::new();
    trace.hash(&mut h);
    span.hash(&mut h);
    Some(h.finish())
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn parse_job(v: &Value) -> JobAttr {
    match v {
        Value::IntValue(i) => JobAttr::Id(*i),
        Value::StringValue(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_or(JobAttr::Invalid, JobAttr::Id)
        }
        _ => JobAttr::Invalid,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match v {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A string attribute, cut to [`MAX_TEXT`] bytes; empty is none.
fn text(v: &Value) -> Option<String> {
    let s = as_str(v)?;
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_owned())
}

/// A number sent as an int, a double or a decimal string.
fn num(v: &Value) -> Option<f64> {
    match v {
        #[allow(clippy::cast_precision_loss)]
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-negative whole number sent as an int, a double or a string.
fn uint(v: &Value) -> Option<u64> {
    match v {
        Value::IntValue(i) => u64::try_from(*i).ok(),
        Value::StringValue(s) if s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            s.trim().parse().ok()
        }
        _ => {
            let f = num(v)?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            (0.0..1.8e19).contains(&f).then_some(f as u64)
        }
    }
}

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::BoolValue(b) => Some(*b),
        Value::StringValue(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::StringValue(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.to_owned())
    }

    #[test]
    fn job_ids_are_integers_or_digits() {
        assert_eq!(parse_job(&Value::IntValue(7)), JobAttr::Id(7));
        assert_eq!(parse_job(&s("42")), JobAttr::Id(42));
        assert_eq!(parse_job(&s("4x")), JobAttr::Invalid);
        assert_eq!(parse_job(&s("")), JobAttr::Invalid);
        assert_eq!(parse_job(&s("99999999999999999999")), JobAttr::Invalid);
        assert_eq!(parse_job(&Value::BoolValue(true)), JobAttr::Invalid);
    }

    #[test]
    fn numbers_come_as_ints_doubles_or_strings() {
        assert_eq!(uint(&Value::IntValue(5)), Some(5));
        assert_eq!(uint(&Value::IntValue(-5)), None);
        assert_eq!(uint(&s("79")), Some(79));
        assert_eq!(uint(&Value::DoubleValue(3.0)), Some(3));
        assert_eq!(uint(&Value::DoubleValue(f64::NAN)), None);
        assert_eq!(num(&s("0.25")), Some(0.25));
        assert_eq!(boolean(&s("False")), Some(false));
    }

    #[test]
    fn same_tool_and_parameters_share_a_fingerprint() {
        let ls = [
            kv("tool_name", s("Bash")),
            kv("tool_parameters", s(r#"{"bash_command":"ls"}"#)),
        ];
        let pwd = [
            kv("tool_name", s("Bash")),
            kv("tool_parameters", s(r#"{"bash_command":"pwd"}"#)),
        ];
        let (Some(Fact::Tool { fingerprint: a, .. }), Some(Fact::Tool { fingerprint: b, .. })) =
            (tool(&ls), tool(&ls))
        else {
            panic!("not tools");
        };
        assert_eq!(a, b);
        let Some(Fact::Tool { fingerprint: c, .. }) = tool(&pwd) else {
            panic!("not a tool");
        };
        assert_ne!(a, c);
    }

    #[test]
    fn codex_counts_only_the_completed_event_with_usage() {
        let timed = [kv("event.kind", s("response.completed"))];
        assert_eq!(codex_sse(&timed), None);
        let usage = [
            kv("event.kind", s("response.completed")),
            kv("input_token_count", s("100")),
            kv("output_token_count", s("20")),
            kv("cached_token_count", s("7")),
        ];
        let Some(Fact::Request(u)) = codex_sse(&usage) else {
            panic!("not a request");
        };
        assert_eq!((u.input, u.output, u.cache_read), (100, 20, 7));
        assert_eq!(u.cost, None);
    }
}
