//! A small WebDriver client for the browser tests: starts Debian's chromedriver on a free
//! port, opens a headless Chromium session, and offers the few commands the tests use.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const WAIT: Duration = Duration::from_secs(20);

/// Where the browser and its driver are, if installed.
pub struct Tools {
    pub chromedriver: PathBuf,
    pub chromium: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Tools {
    pub fn find() -> Option<Tools> {
        let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
        let chromedriver = env("PARLEY_CHROMEDRIVER").or_else(|| which("chromedriver"))?;
        // Debian's /usr/bin/chromium is a wrapper script; the driver wants the binary.
        let chromium = env("PARLEY_CHROMIUM")
            .or_else(|| Some(PathBuf::from("/usr/lib/chromium/chromium")).filter(|p| p.is_file()))
            .or_else(|| which("chromium"))
            .or_else(|| which("chromium-browser"))
            .or_else(|| which("google-chrome"))?;
        Some(Tools {
            chromedriver,
            chromium,
        })
    }
}

pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    chromium: PathBuf,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    pub async fn start(tools: &Tools) -> Driver {
        let port = free_port();
        let child = Command::new(&tools.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let d = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            chromium: tools.chromium.clone(),
            profile: profile.path().to_path_buf(),
            _profile: profile,
        };
        let t = Instant::now();
        loop {
            if let Ok(r) = d.http.get(format!("{}/status", d.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(t.elapsed() < WAIT, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    pub async fn session(&self, width: u32, height: u32) -> Session {
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--lang=en-US".into(),
            format!("--window-size={width},{height}"),
            format!(
                "--user-data-dir={}",
                self.profile.join(format!("p{width}")).display()
            ),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Session {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
        }
    }
}

pub struct Session {
    base: String,
    http: reqwest::Client,
}

#[derive(Clone)]
pub struct El(String);

impl Session {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == "POST" {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.map_err(|e| json!(e.to_string()))?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| json!(e.to_string()))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    async fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn find(&self, css: &str) -> Option<El> {
        let v = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        v[ELEMENT].as_str().map(|s| El(s.to_string()))
    }

    pub async fn find_all(&self, css: &str) -> Vec<El> {
        let v = self
            .must(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|s| El(s.to_string())))
            .collect()
    }

    /// Waits for an element that is displayed.
    pub async fn wait(&self, css: &str) -> El {
        let t = Instant::now();
        loop {
            if let Some(e) = self.find(css).await
                && self.displayed(&e).await
            {
                return e;
            }
            if t.elapsed() > WAIT {
                let body = self.text("body").await;
                panic!("no visible {css:?} after {WAIT:?}; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `cond` holds for the text of the first element matching `css`.
    pub async fn wait_text(&self, css: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let t = Instant::now();
        loop {
            let text = self.text(css).await;
            if cond(&text) {
                return text;
            }
            if t.elapsed() > WAIT {
                panic!("{css:?} never showed {what}; it says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_contains(&self, css: &str, needle: &str) -> String {
        self.wait_text(css, needle, |t| t.contains(needle)).await
    }

    pub async fn wait_gone(&self, css: &str) {
        let t = Instant::now();
        loop {
            match self.find(css).await {
                None => return,
                Some(e) if !self.displayed(&e).await => return,
                _ => {}
            }
            assert!(t.elapsed() < WAIT, "{css:?} is still shown after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn displayed(&self, e: &El) -> bool {
        self.cmd("GET", &format!("/element/{}/displayed", e.0), None)
            .await
            .map(|v| v.as_bool() == Some(true))
            .unwrap_or(false)
    }

    /// The visible text of the first match, or "" if there is none.
    pub async fn text(&self, css: &str) -> String {
        match self.find(css).await {
            Some(e) => self
                .cmd("GET", &format!("/element/{}/text", e.0), None)
                .await
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            None => String::new(),
        }
    }

    pub async fn prop(&self, css: &str, name: &str) -> Value {
        let e = self.wait(css).await;
        self.must("GET", &format!("/element/{}/property/{name}", e.0), None)
            .await
    }

    /// Clicks the first visible match; retries while the page re-renders under it (live
    /// updates replace lists) or something covers it for a moment.
    pub async fn click(&self, css: &str) {
        let t = Instant::now();
        loop {
            let e = self.wait(css).await;
            match self
                .cmd("POST", &format!("/element/{}/click", e.0), None)
                .await
            {
                Ok(_) => return,
                Err(err) if t.elapsed() < WAIT => {
                    let msg = err["error"].as_str().unwrap_or_default();
                    assert!(
                        msg.contains("stale")
                            || msg.contains("intercepted")
                            || msg.contains("not interactable"),
                        "click {css:?}: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("click {css:?}: {err}"),
            }
        }
    }

    pub async fn click_el(&self, e: &El) {
        self.must("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.click(css).await;
        let e = self.wait(css).await;
        self.must("POST", &format!("/element/{}/clear", e.0), None)
            .await;
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Chooses files in an `<input type=file>` as a user's pick would: the paths go to the
    /// element (one per line), which may be visually hidden behind its label.
    pub async fn choose_files(&self, css: &str, paths: &[&Path]) {
        let t = Instant::now();
        let e = loop {
            if let Some(e) = self.find(css).await {
                break e;
            }
            assert!(t.elapsed() < WAIT, "no {css:?} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let text = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n");
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Sets a form control's value as a user's pick would (for date and select inputs).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.wait(css).await;
        self.exec(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([css, value]),
        )
        .await;
    }

    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// A Chrome DevTools command (e.g. granting a permission as a user's click would).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.must(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Runs an asynchronous script; it calls its last argument with the result.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    pub async fn screenshot(&self, path: &Path) {
        let v = self.must("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Browser console entries at warning level or above since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self
            .cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .await
            .unwrap_or(json!([]));
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE") | Some("WARNING")))
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Presses keys as a user would, on whatever has the focus: each item is one key or a
    /// chord (`["Control", "Enter"]`), held down together and released in reverse.
    pub async fn press(&self, chord: &[&str]) {
        let code = |k: &str| -> String {
            match k {
                "Escape" => "\u{E00C}".into(),
                "Tab" => "\u{E004}".into(),
                "Enter" => "\u{E007}".into(),
                "Control" => "\u{E009}".into(),
                "Shift" => "\u{E008}".into(),
                other => other.to_string(),
            }
        };
        let mut actions: Vec<Value> = chord
            .iter()
            .map(|k| json!({"type": "keyDown", "value": code(k)}))
            .collect();
        actions.extend(
            chord
                .iter()
                .rev()
                .map(|k| json!({"type": "keyUp", "value": code(k)})),
        );
        self.must(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
        self.cmd("DELETE", "/actions", None).await.ok();
    }

    /// Waits until `script` (a function body) returns true; `what` names it in the failure.
    pub async fn wait_true(&self, script: &str, args: Value, what: &str) {
        let t = Instant::now();
        loop {
            if self.exec(script, args.clone()).await == json!(true) {
                return;
            }
            assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The id of the element that has the keyboard focus ("" for none).
    pub async fn focused(&self) -> String {
        self.exec(
            "const a = document.activeElement; return a ? (a.id || a.getAttribute('href') || a.tagName) : ''",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    pub async fn url(&self) -> String {
        self.must("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
