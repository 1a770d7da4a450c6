//! A fake Anthropic Messages API on loopback, for running the real Claude
//! Code against (`ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`).
//!
//! It streams the way the real API does (server-sent events:
//! `message_start`, `content_block_start` / `_delta` / `_stop`,
//! `message_delta` with the usage, `message_stop`) and follows a
//! [`Script`]: answer, ask for the same tool call forever, a few tool calls
//! then an answer, accept a request and never answer, fail with 429 / 529,
//! or stream a long answer with pauses. Which step of a script a request is
//! at comes from the conversation it carries (the number of `tool_result`
//! blocks), not from a request counter, so the agent's retries and side
//! requests cannot shift it.
//!
//! Every request is recorded by its loopback server (`message_requests`
//! lists the model calls); that is how the endpoints Claude Code calls
//! were found (see `tests/fixtures/otlp/README.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_model_http::{sse_event as event, LoopbackServer, Recorded, Reply};

/// One tool call the fake model asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name as the agent knows it (`Bash`, `Read`, `Glob`, ...).
    pub name: String,
    /// Its input object.
    pub input: Value,
}

impl ToolCall {
    /// A `Bash` call running `command`.
    pub fn bash(command: &str) -> Self {
        Self {
            name: "Bash".into(),
            input: json!({"command": command, "description": format!("run {command}")}),
        }
    }

    /// A Codex `exec_command` call running `cmd`.
    pub fn exec(cmd: &str) -> Self {
        Self {
            name: "exec_command".into(),
            input: json!({ "cmd": cmd }),
        }
    }
}

impl Script {
    /// Asks for a `Bash` call of each of `commands`, one per request, then
    /// answers `then` (the scripted sessions of the real-Claude tests).
    pub fn bash(commands: &[&str], then: &str) -> Self {
        Self::Tools {
            calls: commands.iter().map(|c| ToolCall::bash(c)).collect(),
            then: then.into(),
        }
    }
}

/// What the fake model does with each request of the conversation.
#[derive(Debug, Clone)]
pub enum Script {
    /// Answers every request with this text (`end_turn`).
    Answer(String),
    /// Asks for the same tool call on every request, forever.
    SameTool(ToolCall),
    /// Asks for these tool calls, one per request, then answers.
    Tools {
        /// In order.
        calls: Vec<ToolCall>,
        /// The answer once every call's result came back.
        then: String,
    },
    /// Reads each request and never sends a byte back.
    Hang,
    /// Answers every request with this HTTP error (429 rate limit,
    /// 529 overloaded, ...).
    Error {
        /// HTTP status.
        status: u16,
        /// `retry-after` header, seconds.
        retry_after_s: Option<u64>,
    },
    /// Streams a long answer: each piece after `pause`.
    SlowAnswer {
        /// The text, in pieces.
        pieces: Vec<String>,
        /// Silence before each piece.
        pause: Duration,
    },
}

/// The usage reported on each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens`.
    pub input_tokens: u64,
    /// `output_tokens` (in `message_delta`).
    pub output_tokens: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `cache_creation_input_tokens`.
    pub cache_creation: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            input_tokens: 1200,
            output_tokens: 40,
            cache_read: 300,
            cache_creation: 100,
        }
    }
}

/// A running fake Messages API.
#[derive(Debug)]
pub struct FakeModel {
    server: LoopbackServer,
}

// `base_url` (the agent's `ANTHROPIC_BASE_URL`), `port`, `requests`,
// `held` and `wait_held` are the server's.
crate::reads_as_its_server!(FakeModel);

impl FakeModel {
    /// Serves `script` on 127.0.0.1:0 with [`Usage::default`].
    pub fn start(script: Script) -> std::io::Result<Self> {
        Self::start_with(script, Usage::default())
    }

    /// Serves `script`, reporting `usage` on every answer.
    pub fn start_with(script: Script, usage: Usage) -> std::io::Result<Self> {
        Ok(Self {
            server: LoopbackServer::start_scripted("fake-anthropic", script, usage, route)?,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr_string(&self) -> String {
        self.server.addr().to_string()
    }

    /// The `POST /v1/messages` requests so far.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.server.posts_to("/v1/messages")
    }
}

fn route(req: &Recorded, script: &Script, usage: Usage, ids: &AtomicU64) -> Reply {
    match (req.method.as_str(), req.path()) {
        ("POST", "/v1/messages") => messages(req, script, usage, ids),
        ("POST", "/v1/messages/count_tokens") => {
            Reply::json(200, &json!({"input_tokens": usage.input_tokens}))
        }
        // Claude Code's start-up check when nonessential traffic is allowed.
        ("GET", "/api/hello") => Reply::json(200, &json!({"message": "hello"})),
        ("GET", "/v1/models") => Reply::json(
            200,
            &json!({"data": [model_entry("claude-sonnet-4-5-20250929"), model_entry("claude-haiku-4-5-20251001")],
                    "has_more": false, "first_id": null, "last_id": null}),
        ),
        _ => Reply::json(
            404,
            &json!({"type": "error", "error": {"type": "not_found_error",
                    "message": format!("the fake model API has no {} {}", req.method, req.path())}}),
        ),
    }
}

fn model_entry(id: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-09-29T00:00:00Z"})
}

/// What one messages request gets.
enum Turn {
    Text(Vec<String>, Duration),
    Tool(ToolCall),
}

fn messages(req: &Recorded, script: &Script, usage: Usage, ids: &AtomicU64) -> Reply {
    let body = req.json().unwrap_or(Value::Null);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-5-20250929")
        .to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let step = tool_results(&body);
    let turn = match script {
        Script::Hang => return Reply::Hang,
        Script::Error {
            status,
            retry_after_s,
        } => return error_reply(*status, *retry_after_s),
        Script::Answer(text) => Turn::Text(vec![text.clone()], Duration::ZERO),
        Script::SlowAnswer { pieces, pause } => Turn::Text(pieces.clone(), *pause),
        Script::SameTool(call) => Turn::Tool(call.clone()),
        Script::Tools { calls, then } => match calls.get(step) {
            Some(call) => Turn::Tool(call.clone()),
            None => Turn::Text(vec![then.clone()], Duration::ZERO),
        },
    };
    let id = ids.fetch_add(1, Ordering::SeqCst);
    if stream {
        sse(&turn, &model, usage, id)
    } else {
        Reply::json(200, &whole_message(&turn, &model, usage, id))
    }
}

/// How many tool results the conversation carries: the script's step.
fn tool_results(body: &Value) -> usize {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .filter_map(|m| m.get("content").and_then(Value::as_array))
                .flatten()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .count()
        })
        .unwrap_or(0)
}

fn error_reply(status: u16, retry_after_s: Option<u64>) -> Reply {
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        401 => "authentication_error",
        400 => "invalid_request_error",
        _ => "api_error",
    };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(s) = retry_after_s {
        headers.push(("retry-after".into(), s.to_string()));
    }
    Reply::Full {
        status,
        headers,
        body: json!({"type": "error", "error": {"type": kind, "message": format!("fake {kind}")}})
            .to_string()
            .into_bytes(),
    }
}

fn start_usage(usage: Usage) -> Value {
    json!({"input_tokens": usage.input_tokens, "output_tokens": 1,
           "cache_creation_input_tokens": usage.cache_creation,
           "cache_read_input_tokens": usage.cache_read})
}

fn stop_reason(turn: &Turn) -> &'static str {
    match turn {
        Turn::Text(..) => "end_turn",
        Turn::Tool(_) => "tool_use",
    }
}

fn whole_message(turn: &Turn, model: &str, usage: Usage, id: u64) -> Value {
    let content = match turn {
        Turn::Text(pieces, _) => json!([{"type": "text", "text": pieces.concat()}]),
        Turn::Tool(call) => json!([{"type": "tool_use", "id": format!("toolu_fake{id:08}"),
                                   "name": call.name, "input": call.input}]),
    };
    json!({"id": format!("msg_fake{id:08}"), "type": "message", "role": "assistant",
           "model": model, "content": content, "stop_reason": stop_reason(turn),
           "stop_sequence": null,
           "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                     "cache_creation_input_tokens": usage.cache_creation,
                     "cache_read_input_tokens": usage.cache_read}})
}

fn sse(turn: &Turn, model: &str, usage: Usage, id: u64) -> Reply {
    let mut chunks: Vec<(Duration, Vec<u8>)> = Vec::new();
    let start = event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": format!("msg_fake{id:08}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": start_usage(usage)}}),
    );
    chunks.push((Duration::ZERO, start));
    match turn {
        Turn::Text(pieces, pause) => {
            chunks.push((
                Duration::ZERO,
                event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}),
                ),
            ));
            for piece in pieces {
                chunks.push((
                    *pause,
                    event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": piece}}),
                    ),
                ));
            }
        }
        Turn::Tool(call) => {
            chunks.push((
                Duration::ZERO,
                event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "tool_use", "id": format!("toolu_fake{id:08}"),
                                              "name": call.name, "input": {}}}),
                ),
            ));
            chunks.push((
                Duration::ZERO,
                event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "input_json_delta",
                                      "partial_json": call.input.to_string()}}),
                ),
            ));
        }
    }
    let mut tail = event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    );
    tail.extend(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(turn), "stop_sequence": null},
                "usage": {"output_tokens": usage.output_tokens}}),
    ));
    tail.extend(event("message_stop", &json!({"type": "message_stop"})));
    chunks.push((Duration::ZERO, tail));
    Reply::event_stream("request-id", id, chunks)
}
