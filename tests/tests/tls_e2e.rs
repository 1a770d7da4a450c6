//! TLS and authentication end to end (issue 20), with certificates made
//! here: the watchdog polls an emitter over HTTPS with a client
//! certificate; a wrong CA, an expired certificate and a wrong host name
//! are `target_down` with the reason in the summary; a rotated certificate
//! is served without a restart; bad handshakes do not wedge the emitter;
//! basic auth and the bearer token both admit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::agents::AgentKind;
use e2e::lab::Lab;
use e2e::procs::Proc;
use e2e::stack::{sample, tail, Watchdog};
use e2e::{bins, net};

/// A CA that signs leaves.
#[derive(Debug)]
struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        // Each CA its own name: a verifier finds the issuer by name.
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {n}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes `NAME.crt`, `NAME.key` (for `names`) into `dir`; `expired`
    /// makes one that ended in 2021.
    fn leaf(&self, dir: &Path, file: &str, names: &[&str], expired: bool) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

/// Waits until something accepts TCP connections at `addr`.
fn wait_listening(proc: &mut Proc, addr: SocketAddr, log: &Path) {
    net::wait_for(
        "the listener",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            if let Ok(Some(status)) = proc.try_wait() {
                return Err(format!("exited with {status}: {}", tail(log)));
            }
            TcpStream::connect(addr)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    )
    .unwrap();
}

/// `emitter serve` with `args` on a free port; its address and log.
fn emitter(db: &Path, dir: &Path, name: &str, args: &[&str]) -> (Proc, SocketAddr, PathBuf) {
    let bin = bins::locate("emitter").unwrap();
    let addr = net::free_addr().unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut cmd = e2e::stack::serve_command(&bin, db, addr, args);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut proc = Proc::spawn(name, &mut cmd).unwrap();
    wait_listening(&mut proc, addr, &log);
    (proc, addr, log)
}

/// A blocking client trusting `ca` only.
fn client(ca: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(5))
        // Each request its own handshake: a kept connection would show
        // the certificate of before a rotation.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[test]
fn https_polls_with_a_client_certificate_and_certificate_errors_are_target_down() {
    let watchdog_bin = bins::locate("watchdog").unwrap();
    let lab = Lab::start(&[AgentKind::Busy], None).unwrap();
    let dir = lab.dir().to_owned();
    let (ca, other_ca, clients_ca) = (Pki::new(), Pki::new(), Pki::new());
    ca.write_ca(&dir.join("ca.crt"));
    other_ca.write_ca(&dir.join("other-ca.crt"));
    clients_ca.write_ca(&dir.join("clients-ca.crt"));
    ca.leaf(&dir, "server", &["localhost", "127.0.0.1"], false);
    ca.leaf(&dir, "old", &["localhost", "127.0.0.1"], true);
    clients_ca.leaf(&dir, "watchdog", &["watchdog"], false);
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.crt\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("web-old.yml"),
        "tls_server_config:\n  cert_file: old.crt\n  key_file: old.key\n",
    )
    .unwrap();
    let web = dir.join("web.yml").display().to_string();
    let (_good, good_addr, good_log) =
        emitter(&lab.db, &dir, "emitter", &["--web.config.file", &web]);
    let web_old = dir.join("web-old.yml").display().to_string();
    let (_old, old_addr, _) = emitter(
        &lab.db,
        &dir,
        "emitter-old",
        &["--web.config.file", &web_old],
    );

    let d = |f: &str| dir.join(f).display().to_string();
    let client_cert = format!(
        "cert_file = {:?}, key_file = {:?}",
        d("watchdog.crt"),
        d("watchdog.key")
    );
    let targets = [
        (
            "good",
            good_addr,
            format!(
                "ca_file = {:?}, {client_cert}, server_name = \"localhost\"",
                d("ca.crt")
            ),
        ),
        (
            "wrong_ca",
            good_addr,
            format!("ca_file = {:?}, {client_cert}", d("other-ca.crt")),
        ),
        (
            "wrong_host",
            good_addr,
            format!(
                "ca_file = {:?}, {client_cert}, server_name = \"elsewhere.example\"",
                d("ca.crt")
            ),
        ),
        ("expired", old_addr, format!("ca_file = {:?}", d("ca.crt"))),
        (
            "no_client_cert",
            good_addr,
            format!("ca_file = {:?}", d("ca.crt")),
        ),
    ];
    let watchdog = Watchdog::start_with(
        &watchdog_bin,
        &dir,
        |listen, alert_log| {
            let mut t = format!(
                "interval = \"1s\"\ntimeout = \"2s\"\nlisten = \"{listen}\"\nalert_log = {:?}\n[rules.target_down]\nfor = \"2s\"\n",
                alert_log.display().to_string()
            );
            for (name, addr, tls) in &targets {
                t.push_str(&format!(
                    "[[target]]\nname = \"{name}\"\nurl = \"https://{addr}\"\ntls_config = {{ {tls} }}\n"
                ));
            }
            t
        },
        None,
    )
    .unwrap();

    // The good one is polled over TLS with its client certificate.
    net::wait_for(
        "watchdog_target_up{target=\"good\"} 1",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let text = watchdog.scrape()?;
            match sample(&text, "watchdog_target_up", &[("target", "good")]) {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}\n{}", tail(&watchdog.log))),
            }
        },
    )
    .unwrap();
    // Each certificate problem is a target_down saying why.
    for (name, why) in [
        ("wrong_ca", "UnknownIssuer"),
        ("wrong_host", "not valid for name"),
        ("expired", "expired"),
        ("no_client_cert", "CertificateRequired"),
    ] {
        let line = watchdog
            .wait_line(
                &format!("target_down for {name}"),
                Duration::from_secs(30),
                |l| l.rule == "target_down" && l.target == name,
            )
            .unwrap();
        assert!(
            line.summary.contains(why),
            "{name}: {why:?} not in {:?}",
            line.summary
        );
    }
    assert!(
        !watchdog
            .lines()
            .iter()
            .any(|l| l.rule == "target_down" && l.target == "good"),
        "{:?}",
        watchdog.lines()
    );
    // Plain HTTP to the TLS port gets no envelope.
    assert!(net::get(&format!("http://{good_addr}/metrics")).map_or(true, |(s, _)| s != 200));
    assert!(tail(&good_log).contains("tls=true"), "{}", tail(&good_log));
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart_and_bad_handshakes_do_not_wedge() {
    let lab = Lab::start(&[AgentKind::Busy], None).unwrap();
    let dir = lab.dir().to_owned();
    let (first, second) = (Pki::new(), Pki::new());
    first.write_ca(&dir.join("first.crt"));
    second.write_ca(&dir.join("second.crt"));
    first.leaf(&dir, "server", &["localhost"], false);
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prom: {hash}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("token"), "t0ken\n").unwrap();
    let web = dir.join("web.yml").display().to_string();
    let token = dir.join("token").display().to_string();
    let (emitter, addr, log) = emitter(
        &lab.db,
        &dir,
        "emitter",
        &["--web.config.file", &web, "--token-file", &token],
    );
    let url = format!("https://localhost:{}/metrics", addr.port());
    let status = |c: &reqwest::blocking::Client,
                  auth: &dyn Fn(
        reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder| {
        auth(c.get(&url)).send().map(|r| r.status().as_u16())
    };
    let trusts_first = client(&dir.join("first.crt"));
    let trusts_second = client(&dir.join("second.crt"));
    // Basic auth and the bearer token both admit; nothing is a 401.
    assert_eq!(
        status(&trusts_first, &|r| r.bearer_auth("t0ken")).unwrap(),
        200
    );
    assert_eq!(
        status(&trusts_first, &|r| r.basic_auth("prom", Some("pw"))).unwrap(),
        200
    );
    assert_eq!(
        status(&trusts_first, &|r| r.basic_auth("prom", Some("no"))).unwrap(),
        401
    );
    assert_eq!(status(&trusts_first, &|r| r).unwrap(), 401);
    // HEAD is answered like GET.
    let head = trusts_first.head(&url).bearer_auth("t0ken").send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(status(&trusts_second, &|r| r.bearer_auth("t0ken")).is_err());

    // Bad handshakes: plain HTTP, garbage, silence; each ends on its own.
    let mut held = Vec::new();
    for bytes in [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfcgarbage".as_slice(),
        b"".as_slice(),
    ] {
        for _ in 0..20 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(bytes).unwrap();
            held.push(s);
        }
    }
    assert_eq!(
        status(&trusts_first, &|r| r.bearer_auth("t0ken")).unwrap(),
        200,
        "{}",
        tail(&log)
    );
    let mut plain = TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("schema_version"));
    drop(held);

    // Rotate: a certificate of the second CA, renamed into place.
    let staging = dir.join("staging");
    std::fs::create_dir(&staging).unwrap();
    second.leaf(&staging, "server", &["localhost"], false);
    std::fs::rename(staging.join("server.key"), dir.join("server.key")).unwrap();
    std::fs::rename(staging.join("server.crt"), dir.join("server.crt")).unwrap();
    net::wait_for(
        "the rotated certificate",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || match status(&trusts_second, &|r| r.bearer_auth("t0ken")) {
            Ok(200) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap();
    assert!(status(&trusts_first, &|r| r.bearer_auth("t0ken")).is_err());
    assert!(
        e2e::procs::alive(emitter.pid()),
        "the same process serves it"
    );
}

/// A process of the tests' own (prometheus, alertmanager) in `dir`.
fn spawn(
    name: &str,
    bin: &Path,
    dir: &Path,
    args: Vec<String>,
    addr: SocketAddr,
) -> (Proc, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    let mut proc = Proc::spawn(name, &mut cmd).unwrap();
    wait_listening(&mut proc, addr, &log);
    (proc, log)
}

/// The watchdog with `toml` (its `listen` at `addr`); not waited for
/// over HTTP, since it may speak TLS only.
fn watchdog_tls(dir: &Path, toml: &str, addr: SocketAddr) -> (Proc, PathBuf) {
    let bin = bins::locate("watchdog").unwrap();
    std::fs::write(dir.join("watchdog.toml"), toml).unwrap();
    let log = dir.join("watchdog.log");
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--config")
        .arg(dir.join("watchdog.toml"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut proc = Proc::spawn("watchdog", &mut cmd).unwrap();
    wait_listening(&mut proc, addr, &log);
    (proc, log)
}

#[test]
fn prometheus_scrapes_the_watchdog_over_tls_with_basic_auth() {
    let Some(prom_bin) = e2e::tools::require("prometheus", "apt-get install prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = Pki::new();
    ca.write_ca(&dir.join("ca.crt"));
    ca.leaf(dir, "watchdog", &["localhost", "127.0.0.1"], false);
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!("tls_server_config:\n  cert_file: watchdog.crt\n  key_file: watchdog.key\n  min_version: TLS12\nbasic_auth_users:\n  prometheus: {hash}\n"),
    )
    .unwrap();
    let addr = net::free_addr().unwrap();
    let down = net::free_addr().unwrap();
    let (_watchdog, wlog) = watchdog_tls(
        dir,
        &format!("interval = \"1s\"\nlisten = \"{addr}\"\nweb_config_file = \"web.yml\"\n[[target]]\nname = \"gone\"\nurl = \"http://{down}\"\n"),
        addr,
    );
    let prom_addr = net::free_addr().unwrap();
    let ca_file = dir.join("ca.crt").display().to_string();
    let job = |name: &str, pw: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca_file:?}\n      server_name: localhost\n    basic_auth:\n      username: prometheus\n      password: {pw}\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}",
        job("watchdog", "scrape-pw"),
        job("wrong_password", "guess")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let (prom, plog) = spawn(
        "prometheus",
        &prom_bin,
        dir,
        vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={prom_addr}"),
            "--log.level=warn".into(),
        ],
        prom_addr,
    );
    let query = |q: &str| -> Result<Vec<(serde_json::Value, f64)>, String> {
        let body = net::client()
            .get(format!("http://{prom_addr}/api/v1/query"))
            .query(&[("query", q)])
            .send()
            .and_then(|r| r.text())
            .map_err(|e| e.to_string())
            .and_then(|t| {
                serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
            })?;
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| Some((r["metric"].clone(), r["value"][1].as_str()?.parse().ok()?)))
            .collect())
    };
    let ctx = || format!("prometheus:\n{}\nwatchdog:\n{}", tail(&plog), tail(&wlog));
    net::wait_for(
        "up == 1 over TLS with basic auth, and 0 with a wrong password",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let good = query("up{job=\"watchdog\"}")?;
            let bad = query("up{job=\"wrong_password\"}")?;
            match (good.as_slice(), bad.as_slice()) {
                ([(_, g)], [(_, b)]) if *g == 1.0 && *b == 0.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx()));
    // The gauges came through: the dead target is seen down.
    net::wait_for(
        "watchdog_target_up{target=\"gone\"} == 0 in Prometheus",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match query("watchdog_target_up{target=\"gone\"}")?.as_slice() {
            [(_, v)] if *v == 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", ctx()));
    drop(prom);
}

#[test]
fn the_watchdog_pushes_to_alertmanager_over_tls() {
    let Some(am_bin) = e2e::tools::require(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = Pki::new();
    ca.write_ca(&dir.join("ca.crt"));
    ca.leaf(dir, "am", &["localhost"], false);
    std::fs::write(
        dir.join("am-web.yml"),
        "tls_server_config:\n  cert_file: am.crt\n  key_file: am.key\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am_addr = net::free_addr().unwrap();
    let (_am, amlog) = spawn(
        "alertmanager",
        &am_bin,
        dir,
        vec![
            format!("--config.file={}", dir.join("am.yml").display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address={am_addr}"),
            format!("--web.config.file={}", dir.join("am-web.yml").display()),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
        am_addr,
    );
    let addr = net::free_addr().unwrap();
    let down = net::free_addr().unwrap();
    let (_watchdog, wlog) = watchdog_tls(
        dir,
        &format!(
            "interval = \"1s\"\nlisten = \"{addr}\"\n[[target]]\nname = \"gone\"\nurl = \"http://{down}\"\n[rules.target_down]\nfor = \"2s\"\n[notify.alertmanager]\nurl = \"https://127.0.0.1:{}\"\ntls_config = {{ ca_file = \"ca.crt\", server_name = \"localhost\" }}\n",
            am_addr.port()
        ),
        addr,
    );
    let https = client(&dir.join("ca.crt"));
    let url = format!(
        "https://localhost:{}/api/v2/alerts?active=true",
        am_addr.port()
    );
    let alert = net::wait_for(
        "target_down in Alertmanager",
        Duration::from_secs(40),
        Duration::from_millis(300),
        || {
            let alerts: serde_json::Value = https
                .get(&url)
                .send()
                .and_then(|r| r.text())
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
            alerts
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|a| a["labels"]["alertname"] == "target_down")
                        .cloned()
                })
                .ok_or_else(|| format!("{alerts}"))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nalertmanager:\n{}\nwatchdog:\n{}",
            tail(&amlog),
            tail(&wlog)
        )
    });
    assert_eq!(alert["labels"]["target"], "gone", "{alert}");
    assert_eq!(alert["status"]["state"], "active", "{alert}");
}
