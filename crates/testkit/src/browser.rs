//! A real browser for the web UI's tests: Debian's `chromium`, headless, driven over WebDriver
//! by `chromedriver` (`fantoccini`). Each [`Browser`] starts its own chromedriver on a free
//! port; a test that panics leaves a screenshot in `target/ui-screenshots/<name>.png`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::server::block_on;

/// Where the browser and its driver are (`.ci/run` installs both).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    client: Option<Client>,
    name: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A new browser for the test `name` (its screenshot's file name), 1280×900.
    pub fn start(name: &str) -> Browser {
        Self::with_size(name, 1280, 900)
    }

    /// A new browser with a window of `width`×`height` (a phone: 390×844).
    pub fn with_size(name: &str, width: u32, height: u32) -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the UI tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--window-size={},{}", width.max(600), height),
            ],
        });
        // A window is at least 500 px wide: a phone's screen is emulated.
        if width < 600 {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0},
            });
        }
        let caps = json!({ "goog:chromeOptions": options });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        };
        let client = block_on(async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
        })
        .expect("a WebDriver session");
        Browser {
            driver,
            client: Some(client),
            name: name.to_owned(),
        }
    }

    fn client(&self) -> Client {
        self.client.clone().expect("an open session")
    }

    /// Open `url`.
    pub fn goto(&self, url: &str) {
        let c = self.client();
        let url = url.to_owned();
        block_on(async move { c.goto(&url).await }).unwrap_or_else(|e| panic!("goto: {e}"));
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        let c = self.client();
        block_on(async move { c.current_url().await })
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// The text of the first element matching `css` (None: no such element).
    pub fn text(&self, css: &str) -> Option<String> {
        let c = self.client();
        let css = css.to_owned();
        block_on(async move {
            match c.find(Locator::Css(&css)).await {
                Ok(e) => e.text().await.ok(),
                Err(_) => None,
            }
        })
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        let c = self.client();
        let css = css.to_owned();
        block_on(async move { c.find_all(Locator::Css(&css)).await.map(|v| v.len()) }).unwrap_or(0)
    }

    /// Type `text` into the field matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        let c = self.client();
        let (sel, text) = (css.to_owned(), text.to_owned());
        block_on(async move {
            let e = c.find(Locator::Css(&sel)).await?;
            e.clear().await?;
            e.send_keys(&text).await
        })
        .unwrap_or_else(|e| panic!("fill {css}: {e}"));
    }

    /// Press keys (`fantoccini::key::Key` characters: Tab is `\u{e004}`, Enter `\u{e007}`) on
    /// the element that has the focus.
    pub fn press(&self, keys: &str) {
        let c = self.client();
        let keys = keys.to_owned();
        block_on(async move { c.active_element().await?.send_keys(&keys).await })
            .unwrap_or_else(|e| panic!("keys: {e}"));
    }

    /// Click the element matching `css`.
    pub fn click(&self, css: &str) {
        let c = self.client();
        let sel = css.to_owned();
        block_on(async move { c.find(Locator::Css(&sel)).await?.click().await })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Accept the page's `confirm()` dialog.
    pub fn accept_dialog(&self) {
        let c = self.client();
        block_on(async move { c.accept_alert().await }).unwrap_or_else(|e| panic!("dialog: {e}"));
    }

    /// Run `script` (a function body; `arguments[0]` is the callback of an async script) and
    /// return its value.
    pub fn run_async(&self, script: &str) -> Value {
        let c = self.client();
        let script = script.to_owned();
        block_on(async move { c.execute_async(&script, vec![]).await })
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    /// Run `script` (a function body) and return its value.
    pub fn run(&self, script: &str) -> Value {
        let c = self.client();
        let script = script.to_owned();
        block_on(async move { c.execute(&script, vec![]).await })
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    /// Wait up to `within` until `ok()` holds; panic saying `what` otherwise.
    pub fn wait_for(&self, within: Duration, what: &str, mut ok: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what}; at {}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Save a PNG of the page to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        let c = self.client();
        if let Ok(png) = block_on(async move { c.screenshot().await }) {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(path, png);
        }
    }

    /// Sign in at `base` with `token`.
    pub fn sign_in(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/login"));
        self.fill("#token", token);
        self.click("button[type=submit]");
        self.wait_for(Duration::from_secs(10), "the jobs page", |b| {
            b.text("h1").is_some_and(|t| t.starts_with("Jobs"))
        });
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
            let path = dir.join(format!("{}.png", self.name));
            self.screenshot(&path);
            eprintln!("screenshot of the failing page: {}", path.display());
        }
        if let Some(c) = self.client.take() {
            let _ = block_on(async move { c.close().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
