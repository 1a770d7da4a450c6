//! The real `emitter serve` answers gzip when the request allows it and
//! plain when not (issue 22), and the watchdog's poller, which asks for
//! gzip, hands the engine the decoded envelope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::bins;
use e2e::lab::Lab;
use e2e::stack::Emitter;

/// `GET url` with `accept` as `Accept-Encoding` (none when `None`): the
/// status, the `Content-Encoding`, the `Vary` and the raw body bytes.
fn get(url: &str, accept: Option<&str>) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    // reqwest is built without its gzip feature: it neither asks nor decodes.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.get(url);
    if let Some(accept) = accept {
        req = req.header("accept-encoding", accept);
    }
    let resp = req.send().unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (encoding, vary) = (header("content-encoding"), header("vary"));
    let status = resp.status().as_u16();
    (status, encoding, vary, resp.bytes().unwrap().to_vec())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn assert_envelope(body: &[u8]) {
    let problems = shared_schema::validate(body);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn a_real_emitter_answers_gzip_when_asked_and_plain_when_not() {
    let emitter_bin = bins::locate("emitter").unwrap();
    let lab = Lab::start(&AgentKind::ALL, None).unwrap();
    let emitter = Emitter::start(&emitter_bin, &lab.db, lab.dir()).unwrap();
    let url = emitter.url();

    let (status, encoding, vary, plain) = get(&url, None);
    assert_eq!(status, 200);
    assert_eq!(encoding, None);
    assert_eq!(vary.as_deref(), Some("Accept-Encoding"));
    assert_envelope(&plain);
    assert!(plain.len() >= 1024, "envelope only {} bytes", plain.len());

    for refused in ["gzip;q=0", "identity", "br", "*, gzip;q=0"] {
        let (status, encoding, _, body) = get(&url, Some(refused));
        assert_eq!(
            (status, encoding),
            (200, None),
            "Accept-Encoding: {refused}"
        );
        assert_envelope(&body);
    }

    for allowed in ["gzip", "deflate, gzip;q=0.5", "*"] {
        let (status, encoding, vary, zipped) = get(&url, Some(allowed));
        assert_eq!(status, 200, "Accept-Encoding: {allowed}");
        assert_eq!(
            encoding.as_deref(),
            Some("gzip"),
            "Accept-Encoding: {allowed}"
        );
        assert_eq!(vary.as_deref(), Some("Accept-Encoding"));
        assert_eq!(&zipped[..2], &[0x1f, 0x8b], "gzip magic");
        let decoded = gunzip(&zipped);
        assert_envelope(&decoded);
        assert!(
            zipped.len() < decoded.len(),
            "{} vs {}",
            zipped.len(),
            decoded.len()
        );
    }

    // The up-close view of a running job, gzipped too when large enough.
    let job = lab.agents[0].1.job_id;
    let agents_url = url.replace("/metrics", &format!("/agents/{job}"));
    let (status, _, _, plain_view) = get(&agents_url, None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&plain_view));
    let (status, encoding, vary, view) = get(&agents_url, Some("gzip"));
    assert_eq!(status, 200);
    assert_eq!(vary.as_deref(), Some("Accept-Encoding"));
    let view = if plain_view.len() >= 1024 {
        assert_eq!(encoding.as_deref(), Some("gzip"));
        gunzip(&view)
    } else {
        assert_eq!(encoding, None, "a small view stays plain");
        view
    };
    let view: serde_json::Value = serde_json::from_slice(&view).unwrap();
    assert_eq!(view["job_id"], job);

    // The watchdog's poller asks for gzip and returns the decoded body.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let poller = watchdog::poll::Poller::for_url(&url, None, Duration::from_secs(10)).unwrap();
    let body = rt.block_on(poller.fetch()).unwrap();
    assert_envelope(&body);
}
