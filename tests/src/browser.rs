//! A real browser for the dashboard scenarios: headless Chromium driven through Debian's
//! `chromium-driver` over the W3C WebDriver protocol (plain HTTP with `reqwest`, so no client
//! crate). Each [`Browser`] has its own driver process and a fresh profile, both removed on drop.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{tempdir::TempDir, WAIT};

/// How long a page may take to show what a scenario waits for: a browser on a loaded two-core
/// machine renders far slower than the hub answers.
const PAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Start `chromedriver` and a headless Chromium with a fresh profile. Panics, naming what
    /// to install, when either is missing (`scripts/ensure-services.sh` installs both).
    pub async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: apt-get install chromium chromium-driver; scripts/ensure-services.sh installs it)");
        let profile = TempDir::new("perry-chromium");
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await;
            if let Ok(r) = ready {
                if r.json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true)
                {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser._profile.0.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let created = browser.raw("POST", "/session", Some(caps)).await;
        let id = created["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    /// Open a URL and wait for the page to load.
    pub async fn goto(&self, url: &str) {
        self.raw("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.raw("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.base);
        let resp = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .expect("webdriver request");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.expect("webdriver JSON");
        ok.then(|| Element(v["value"][ELEMENT].as_str().unwrap_or_default().to_owned()))
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} never appeared on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the text of `css` satisfies `pred`; returns it.
    pub async fn wait_text(&self, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            // A live page replaces elements as it updates: one found a moment ago may be gone
            // (a stale element), and is looked up again.
            let found = match self.find(css).await {
                Some(e) => self.try_text(&e).await,
                None => None,
            };
            if let Some(t) = found {
                if pred(&t) {
                    return t;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{css} still reads {t:?}"
                );
            } else if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{css} never appeared on {}: {}",
                    self.url().await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's text (for failure messages).
    pub async fn page_text(&self) -> String {
        self.eval("return document.documentElement.outerHTML")
            .await
            .to_string()
    }

    /// Visible text of an element, or None when the element is no longer on the page.
    pub async fn try_text(&self, e: &Element) -> Option<String> {
        let url = format!("{}/element/{}/text", self.base, e.0);
        let resp = self.http.get(url).send().await.expect("webdriver request");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.expect("webdriver JSON");
        ok.then(|| v["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Visible text of an element.
    pub async fn text(&self, e: &Element) -> String {
        self.raw("GET", &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Type into an element.
    pub async fn type_into(&self, e: &Element, text: &str) {
        self.raw(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Click an element.
    pub async fn click(&self, e: &Element) {
        self.raw("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    /// Click the element matching `css` once it is there, looking it up again if the page
    /// replaced it in the meantime (a stale element).
    pub async fn click_on(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            let e = self.wait_for(css).await;
            let url = format!("{}/element/{}/click", self.base, e.0);
            let resp = self
                .http
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .expect("webdriver request");
            if resp.status().is_success() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} could not be clicked: {}",
                resp.text().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run a script in the page; its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.raw(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Every cookie the browser holds for the page, with its flags.
    pub async fn cookies(&self) -> Vec<Value> {
        self.raw("GET", "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.raw("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("PNG")
    }

    /// Save a screenshot as `<dir>/<name>.png` when `PERRY_DASHBOARD_SCREENSHOTS` names a
    /// directory.
    pub async fn keep_screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("PERRY_DASHBOARD_SCREENSHOTS") {
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            let path = std::path::Path::new(&dir).join(format!("{name}.png"));
            std::fs::write(path, self.screenshot().await).expect("write screenshot");
        }
    }
}
