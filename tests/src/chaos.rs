//! Clients that behave like the real ones while parts of the hub fail, for the fault suite
//! (`tests/it/faults/`): [`Endpoints`] is the proxy's view of which replicas are up; a
//! [`spawn_worker`] reconnects every 5 s like builder-linux, finishes the builds it holds and
//! reports them on its next connection, and never retries an upload; a [`cli_build`] gives up on
//! an HTTP error like `perry publish`, and re-subscribes after a dropped socket like newer CLIs.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::api::{b64, cli_form, manifest, BOUNDARY};

/// Tries of a download, a second apart.
const DOWNLOAD_TRIES: usize = 20;

/// How long builder-linux waits before it reconnects.
pub const WORKER_RECONNECT: Duration = Duration::from_secs(5);

/// The replicas a proxy would send a new request or socket to: round robin over those up.
#[derive(Debug, Default)]
pub struct Endpoints {
    urls: Mutex<Vec<String>>,
    next: AtomicUsize,
}

impl Endpoints {
    /// Start with `urls` (`http://host:port`).
    pub fn new(urls: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            urls: Mutex::new(urls),
            next: AtomicUsize::new(0),
        })
    }

    /// The next replica up, if any.
    pub fn pick(&self) -> Option<String> {
        let urls = self.urls.lock().expect("endpoints");
        if urls.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % urls.len();
        Some(urls[i].clone())
    }

    /// A replica went down (the proxy's health check noticed).
    pub fn remove(&self, url: &str) {
        self.urls.lock().expect("endpoints").retain(|u| u != url);
    }

    /// A replica came up.
    pub fn add(&self, url: String) {
        self.urls.lock().expect("endpoints").push(url);
    }
}

/// Where a proxy sends each kind of request: the API to ingest, `/ws` to dispatchers, links and
/// tarballs to download. One replica running every service serves all three.
#[derive(Debug, Clone)]
pub struct Routes {
    /// `POST /api/v1/build` and artifact uploads.
    pub ingest: Arc<Endpoints>,
    /// `/ws`.
    pub ws: Arc<Endpoints>,
    /// `/api/v1/dl/…` and `/api/v1/tarball/…`.
    pub download: Arc<Endpoints>,
}

impl Routes {
    /// Every request to the same replicas.
    pub fn same(endpoints: &Arc<Endpoints>) -> Self {
        Self {
            ingest: endpoints.clone(),
            ws: endpoints.clone(),
            download: endpoints.clone(),
        }
    }
}

/// The artifact a simulated worker builds for `job_id` (distinct per job, so a mix-up shows).
pub fn artifact_for(job_id: &str) -> Vec<u8> {
    format!("artifact of {job_id}\n").repeat(64).into_bytes()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str) -> Option<Ws> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let connecting = tokio_tungstenite::connect_async(url);
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok((ws, _))) => Some(ws),
        _ => None,
    }
}

async fn send(ws: &mut Ws, frame: &Value) -> bool {
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .is_ok()
}

/// The next JSON frame, or None when the socket is gone.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(WsMessage::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A linux worker named `name` with `slots` slots, connected through `routes` until `stop`.
pub fn spawn_worker(
    routes: Routes,
    secret: String,
    name: String,
    slots: u32,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (done_tx, mut done) = mpsc::unbounded_channel::<Value>();
        // Frames of builds that went on while the worker was disconnected: sent first thing on
        // the next connection, which re-attaches their jobs.
        let mut unsent: Vec<Value> = Vec::new();
        let hello = json!({"type":"worker_hello","name":name,"secret":secret,
            "capabilities":["linux"],"max_concurrent":slots,"perry_version":"0.5.0"});
        while !stop.is_cancelled() {
            let Some(base) = routes.ws.pick() else {
                tokio::time::sleep(WORKER_RECONNECT).await;
                continue;
            };
            let Some(mut ws) = connect(&base).await else {
                tokio::time::sleep(WORKER_RECONNECT).await;
                continue;
            };
            let mut alive = send(&mut ws, &hello).await;
            while alive && !unsent.is_empty() {
                alive = send(&mut ws, &unsent[0]).await;
                if alive {
                    unsent.remove(0);
                }
            }
            while alive {
                tokio::select! {
                    () = stop.cancelled() => return,
                    frame = recv(&mut ws) => match frame {
                        Some(f) if f["type"] == "job_assign" => {
                            let (routes, http, done_tx) = (routes.clone(), http.clone(), done_tx.clone());
                            tokio::spawn(async move {
                                build(&routes, &http, &f, &done_tx).await;
                            });
                        }
                        Some(_) => {}
                        None => alive = false,
                    },
                    Some(complete) = done.recv() => {
                        if !send(&mut ws, &complete).await {
                            unsent.push(complete);
                            alive = false;
                        }
                    }
                }
            }
            tokio::time::sleep(WORKER_RECONNECT).await;
        }
    })
}

/// Log lines each simulated build prints before its upload.
pub const LOG_LINES: usize = 3;

/// One build as builder-linux runs it: fetch the tarball (a few tries), print [`LOG_LINES`]
/// lines, upload the artifact once, and say `complete`. Frames go to `out`, in order.
async fn build(
    routes: &Routes,
    http: &reqwest::Client,
    assign: &Value,
    out: &mpsc::UnboundedSender<Value>,
) {
    let complete = build_frames(routes, http, assign, out).await;
    let _ = out.send(complete);
}

async fn build_frames(
    routes: &Routes,
    http: &reqwest::Client,
    assign: &Value,
    out: &mpsc::UnboundedSender<Value>,
) -> Value {
    let job_id = assign["job_id"].as_str().unwrap_or_default().to_owned();
    let auth = format!(
        "Bearer {}",
        assign["auth_token"].as_str().unwrap_or_default()
    );
    let mut fetched = false;
    for _ in 0..5 {
        let Some(base) = routes.download.pick() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let got = http
            .get(format!("{base}/api/v1/tarball/{job_id}"))
            .header("authorization", &auth)
            .send()
            .await;
        if let Ok(resp) = got {
            if resp.status().is_success() && resp.bytes().await.is_ok() {
                fetched = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !fetched {
        return json!({"type":"complete","job_id":job_id,"success":false,"duration_secs":0.1,
            "error":"could not download the project","artifacts":[]});
    }
    for i in 0..LOG_LINES {
        let line = format!("compiling {job_id} step {i}");
        let _ = out.send(
            json!({"type":"log","job_id":job_id,"stage":"compiling","line":line,"stream":"stdout"}),
        );
    }
    // The lines leave before the upload starts, as a real build's output does.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let artifact = artifact_for(&job_id);
    let sha256 = hex::encode(Sha256::digest(&artifact));
    let name = "app-linux.tar.gz";
    if let Some(base) = routes.ingest.pick() {
        // One try, as the real workers do: a failed upload is the hub's to recover from.
        let _ = http
            .post(format!("{base}/api/v1/artifact/upload/{job_id}"))
            .header("authorization", &auth)
            .header("content-type", "text/plain")
            .header("x-artifact-name", name)
            .header("x-artifact-sha256", &sha256)
            .header("x-artifact-target", "linux")
            .body(b64(&artifact))
            .send()
            .await;
    }
    json!({"type":"complete","job_id":job_id,"success":true,"duration_secs":0.1,
        "needs_finishing":null,"artifacts":[{"name":name,"size":artifact.len(),"sha256":sha256}]})
}

/// New links for a link used up by a killed process; more would mean links are being lost.
const MAX_RELINKS: u32 = 2;

/// The download link of the newest `artifact_ready` among `frames`.
fn last_link(frames: &[Value]) -> Option<String> {
    frames
        .iter()
        .rev()
        .find(|f| f["type"] == "artifact_ready")
        .and_then(|f| f["download_url"].as_str())
        .map(str::to_owned)
}

/// Subscribe to an ended job again, as a CLI run a second time does: the replay carries its
/// artifacts with freshly minted links.
async fn fresh_link(routes: &Routes, job_id: &str) -> Option<String> {
    let mut ws = connect(&routes.ws.pick()?).await?;
    if !send(&mut ws, &json!({"type":"subscribe","job_id":job_id})).await {
        return None;
    }
    let mut frames = Vec::new();
    while let Some(f) = recv(&mut ws).await {
        let done = f["type"] == "complete";
        frames.push(f);
        if done {
            break;
        }
    }
    last_link(&frames)
}

/// What a simulated CLI saw of one build.
#[derive(Debug)]
pub enum CliOutcome {
    /// The submission got an HTTP error or no answer: the CLI exits, nothing was accepted.
    Refused(String),
    /// Accepted and followed to its end.
    Followed {
        /// The job.
        job_id: String,
        /// `complete.success`.
        success: bool,
        /// Frames of the subscription that saw `complete` (backlog, then live).
        frames: Vec<Value>,
        /// Times the socket dropped and the CLI subscribed again.
        resubscribed: u32,
        /// The downloaded artifact was the one built for this job, or what went wrong.
        artifact: Result<(), String>,
    },
}

/// One `perry publish` of a linux build through `routes` with `license_key`.
pub async fn cli_build(routes: &Routes, http: &reqwest::Client, license_key: &str) -> CliOutcome {
    let Some(base) = routes.ingest.pick() else {
        return CliOutcome::Refused("no replica up".into());
    };
    let form = cli_form(
        &manifest("linux", "com.example.faults"),
        &json!({}),
        b"faults",
        license_key,
    );
    let submitted = http
        .post(format!("{base}/api/v1/build"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form)
        .send()
        .await;
    let job_id = match submitted {
        Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
            Ok(body) => body["job_id"].as_str().unwrap_or_default().to_owned(),
            Err(e) => return CliOutcome::Refused(format!("unreadable answer: {e}")),
        },
        Ok(resp) => return CliOutcome::Refused(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => return CliOutcome::Refused(format!("no answer: {e}")),
    };
    let mut resubscribed = 0;
    let (success, frames) = loop {
        let mut frames = Vec::new();
        let subscribed = match routes.ws.pick() {
            Some(base) => connect(&base).await,
            None => None,
        };
        if let Some(mut ws) = subscribed {
            if send(&mut ws, &json!({"type":"subscribe","job_id":job_id})).await {
                while let Some(f) = recv(&mut ws).await {
                    let done = f["type"] == "complete";
                    frames.push(f);
                    if done {
                        break;
                    }
                }
            }
        }
        if let Some(last) = frames.last().filter(|f| f["type"] == "complete") {
            break (last["success"] == true, frames);
        }
        // Newer CLIs wait min(2n, 30) s, then subscribe again.
        resubscribed += 1;
        tokio::time::sleep(Duration::from_secs(u64::from((2 * resubscribed).min(30)))).await;
    };
    let mut link = last_link(&frames);
    let mut artifact = Err("no artifact_ready".to_owned());
    let mut relinked = 0;
    while let Some(current) = link.take() {
        // The link names the replica that minted it; any replica serves it.
        let path = current
            .find("/api/")
            .map_or(current.as_str(), |i| &current[i..])
            .to_owned();
        // A download cut off by a dying replica is tried again (its claim on the link lapses).
        let mut cut = false;
        for _ in 0..DOWNLOAD_TRIES {
            let Some(base) = routes.download.pick() else {
                break;
            };
            match http.get(format!("{base}{path}")).send().await {
                Ok(resp) if resp.status().is_success() => match resp.text().await {
                    Ok(text) => {
                        let decoded = base64::engine::general_purpose::STANDARD.decode(text.trim());
                        artifact = match decoded {
                            Ok(bytes) if bytes == artifact_for(&job_id) => Ok(()),
                            Ok(bytes) => Err(format!("{} other bytes", bytes.len())),
                            Err(e) => Err(format!("not base64 ({e}): {} bytes", text.len())),
                        };
                        break;
                    }
                    // Cut off mid-body (the serving process was killed): try again once the
                    // link's claim has lapsed.
                    Err(e) => {
                        cut = true;
                        let before = artifact.err().unwrap_or_default();
                        artifact = Err(format!("{before}; body cut off from {base}: {e}"));
                    }
                },
                Ok(resp) => {
                    let before = artifact.err().unwrap_or_default();
                    artifact = Err(format!(
                        "{before}; HTTP {} from {base}",
                        resp.status().as_u16()
                    ));
                    // Used for good, with no claim to wait for (no Retry-After): a process
                    // killed after consuming the link but before its last chunk left (DEC-30).
                    // The user runs the command again, and the replay brings a fresh link.
                    // Only after a cut-off body: a link refused without one is a lost link.
                    let consumed = resp.status() == reqwest::StatusCode::NOT_FOUND
                        && !resp.headers().contains_key("retry-after");
                    if cut && consumed && relinked < MAX_RELINKS {
                        relinked += 1;
                        println!("faults: {job_id}: a killed process used up the link; a fresh one");
                        link = fresh_link(routes, &job_id).await;
                        break;
                    }
                }
                Err(e) => {
                    let before = artifact.err().unwrap_or_default();
                    artifact = Err(format!("{before}; no answer from {base}: {e}"));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    CliOutcome::Followed {
        job_id,
        success,
        frames,
        resubscribed,
        artifact,
    }
}
