//! The `Source` seam: an orchestrator can serve the same envelope from its
//! own in-memory state, and the server finishes in-flight requests on shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_valid, assert_valid_bytes, wait_until, Server};
use emitter::{SectionError, SectionResult, ServeOptions, Session, Snapshotter, Source};
use shared_schema::{Agent, Cost, CostAggregate, Errors, Queue, Reconciler, Stage, Timestamp};

/// An orchestrator's own state; `slow` makes every snapshot take 300 ms.
#[derive(Default)]
struct Memory {
    slow: bool,
    started: Arc<AtomicBool>,
}

struct MemorySession<'a>(&'a Memory);

impl Source for Memory {
    fn session(&self) -> Box<dyn Session + '_> {
        self.started.store(true, Ordering::SeqCst);
        if self.slow {
            std::thread::sleep(Duration::from_millis(300));
        }
        Box::new(MemorySession(self))
    }
}

impl Session for MemorySession<'_> {
    fn stages(&mut self, now: &Timestamp) -> SectionResult<Vec<Stage>> {
        let _ = self.0;
        Ok(vec![Stage {
            task_id: Some(1),
            work_item: None,
            stage: "dev".into(),
            age_in_stage_s: Some(now.seconds_since(&now.plus_seconds(-5.0))),
            repo: None,
        }])
    }
    fn queue(&mut self) -> SectionResult<Queue> {
        Err(SectionError::Data("queue not tracked in memory".into()))
    }
    fn agents(&mut self, _now: &Timestamp) -> SectionResult<Vec<Agent>> {
        Ok(vec![Agent {
            job_id: 9,
            pid: Some(i64::from(std::process::id())),
            ..Agent::default()
        }])
    }
    fn cost(&mut self) -> SectionResult<Cost> {
        Ok(Cost {
            running: Vec::new(),
            aggregate: Some(CostAggregate {
                runs: Some(0),
                cost_usd: Some(0.0),
                input_tokens: Some(0),
                output_tokens: Some(0),
                cache_read_tokens: Some(0),
                cache_creation_tokens: Some(0),
            }),
        })
    }
    fn reconciler(&mut self) -> SectionResult<Option<Reconciler>> {
        Ok(None)
    }
    fn errors(&mut self) -> SectionResult<Option<Errors>> {
        Ok(None)
    }
}

#[test]
fn an_in_memory_source_gets_proc_figures_and_degradation_for_free() {
    let env = Snapshotter::new(Arc::new(Memory::default()), "/proc").take();
    let json = assert_valid(&env);
    assert_eq!(json["degraded"], serde_json::json!(["queue"]));
    assert_eq!(json["queue"], serde_json::Value::Null);
    assert_eq!(json["stages"][0]["age_in_stage_s"], 5.0);
    // The emitter filled in this test process's own figures from /proc.
    assert!(json["agents"][0]["state"]
        .as_str()
        .is_some_and(|s| s.len() == 1));
    assert!(json["agents"][0]["start_ticks"].as_u64().is_some());
    assert!(json["agents"][0]["io_rchar"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight() {
    let started = Arc::new(AtomicBool::new(false));
    let source = Memory {
        slow: true,
        started: Arc::clone(&started),
    };
    let mut server = Server::start(source, ServeOptions::default()).await;
    let url = server.url("/metrics");
    let request = tokio::spawn(async move {
        let resp = reqwest::get(&url).await.unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap())
    });
    // Shut down while the (300 ms) snapshot is being taken.
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "the snapshot to start", || {
            started.load(Ordering::SeqCst)
        })
    })
    .await
    .unwrap();
    server.stop().await;
    let (status, body) = request.await.unwrap();
    assert_eq!(status, 200);
    assert_valid_bytes(&body);
}
