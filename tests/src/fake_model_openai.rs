//! A fake OpenAI Responses API on loopback, for running the real Codex CLI
//! against (`POST /v1/responses`, streamed as server-sent events:
//! `response.created`, `response.output_item.added`,
//! `response.output_text.delta`, `response.output_item.done`,
//! `response.completed` with the usage).
//!
//! It follows the same [`Script`] as the Anthropic fake; a [`ToolCall`]
//! becomes a `function_call` item whose `arguments` is the input's JSON
//! text. The step of a script is the number of `function_call_output`
//! items the request carries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_model::{Script, ToolCall, Usage};
use crate::fake_model_http::{sse_event as event, LoopbackServer, Recorded, Reply};

/// A running fake Responses API.
#[derive(Debug)]
pub struct FakeResponses {
    server: LoopbackServer,
}

// `port`, `requests`, `held` and `wait_held` are the server's; this
// type's own `base_url` (with `/v1`) comes first.
crate::reads_as_its_server!(FakeResponses);

impl FakeResponses {
    /// Serves `script` on 127.0.0.1:0, reporting `usage` on every answer.
    pub fn start(script: Script, usage: Usage) -> std::io::Result<Self> {
        Ok(Self {
            server: LoopbackServer::start_scripted("fake-openai", script, usage, route)?,
        })
    }

    /// `http://127.0.0.1:<port>/v1`: the provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.base_url())
    }

    /// The `POST /v1/responses` requests so far.
    pub fn response_requests(&self) -> Vec<Recorded> {
        self.server.posts_to("/v1/responses")
    }
}

fn route(req: &Recorded, script: &Script, usage: Usage, ids: &AtomicU64) -> Reply {
    match (req.method.as_str(), req.path()) {
        ("POST", "/v1/responses") => responses(req, script, usage, ids),
        ("GET", "/v1/models") => Reply::json(
            200,
            &json!({"object": "list", "data": [{"id": "gpt-5-codex", "object": "model", "owned_by": "fake"}]}),
        ),
        _ => Reply::json(
            404,
            &json!({"error": {"type": "not_found",
                    "message": format!("the fake Responses API has no {} {}", req.method, req.path())}}),
        ),
    }
}

fn responses(req: &Recorded, script: &Script, usage: Usage, ids: &AtomicU64) -> Reply {
    let body = req.json().unwrap_or(Value::Null);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-5-codex")
        .to_owned();
    let step = body
        .get("input")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
                .count()
        })
        .unwrap_or(0);
    let (pieces, pause, call): (Vec<String>, Duration, Option<ToolCall>) = match script {
        Script::Hang => return Reply::Hang,
        Script::Error {
            status,
            retry_after_s,
        } => {
            let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            if let Some(s) = retry_after_s {
                headers.push(("retry-after".into(), s.to_string()));
            }
            return Reply::Full {
                status: *status,
                headers,
                body:
                    json!({"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded",
                                       "message": format!("fake error {status}")}})
                    .to_string()
                    .into_bytes(),
            };
        }
        Script::Answer(text) => (vec![text.clone()], Duration::ZERO, None),
        Script::SlowAnswer { pieces, pause } => (pieces.clone(), *pause, None),
        Script::SameTool(call) => (Vec::new(), Duration::ZERO, Some(call.clone())),
        Script::Tools { calls, then } => match calls.get(step) {
            Some(call) => (Vec::new(), Duration::ZERO, Some(call.clone())),
            None => (vec![then.clone()], Duration::ZERO, None),
        },
    };
    let id = ids.fetch_add(1, Ordering::SeqCst);
    let resp_id = format!("resp_fake{id:08}");
    let mut chunks: Vec<(Duration, Vec<u8>)> = Vec::new();
    let base = json!({"id": resp_id, "object": "response", "model": model, "status": "in_progress", "output": []});
    chunks.push((
        Duration::ZERO,
        event(
            "response.created",
            &json!({"type": "response.created", "response": base}),
        ),
    ));
    let item = match call {
        Some(call) => {
            let item = json!({"type": "function_call", "id": format!("fc_fake{id:08}"),
                              "call_id": format!("call_fake{id:08}"), "name": call.name,
                              "arguments": call.input.to_string(), "status": "completed"});
            chunks.push((
                Duration::ZERO,
                event(
                    "response.output_item.added",
                    &json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
                ),
            ));
            item
        }
        None => {
            let msg_id = format!("msg_fake{id:08}");
            chunks.push((
                Duration::ZERO,
                event(
                    "response.output_item.added",
                    &json!({"type": "response.output_item.added", "output_index": 0,
                            "item": {"type": "message", "id": msg_id, "role": "assistant",
                                     "status": "in_progress", "content": []}}),
                ),
            ));
            for piece in &pieces {
                chunks.push((
                    pause,
                    event(
                        "response.output_text.delta",
                        &json!({"type": "response.output_text.delta", "item_id": msg_id,
                                "output_index": 0, "content_index": 0, "delta": piece}),
                    ),
                ));
            }
            json!({"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": pieces.concat(), "annotations": []}]})
        }
    };
    let mut tail = event(
        "response.output_item.done",
        &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    );
    tail.extend(event(
        "response.completed",
        &json!({"type": "response.completed", "response": {
            "id": resp_id, "object": "response", "model": model, "status": "completed",
            "output": [item],
            "usage": {"input_tokens": usage.input_tokens,
                      "input_tokens_details": {"cached_tokens": usage.cache_read},
                      "output_tokens": usage.output_tokens,
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": usage.input_tokens + usage.output_tokens}}}),
    ));
    chunks.push((Duration::ZERO, tail));
    Reply::event_stream("x-request-id", id, chunks)
}
