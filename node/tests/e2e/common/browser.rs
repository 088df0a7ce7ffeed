//! A driver for real headless Chromium over the Chrome DevTools Protocol (CDP), for the browser
//! tests of the web UI. [`Browser::launch`] starts Chromium with a throw-away profile and drives
//! one page over the DevTools WebSocket with blocking calls; dropping the [`Browser`] closes and
//! kills Chromium, also when the test panics.
//!
//! Chromium is `/usr/bin/chromium` unless the environment variable `HEARTH_CHROMIUM` names
//! another binary (a path, or a name looked up in `PATH`).

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// The Chromium binary used unless `HEARTH_CHROMIUM` names another.
#[allow(dead_code)]
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long Chromium may take to print its DevTools address.
#[allow(dead_code)]
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CDP call, or one page load, may take.
#[allow(dead_code)]
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Browser::click`] waits for its element to become clickable.
#[allow(dead_code)]
const CLICK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dropped [`Browser`] may take to exit after `Browser.close` before it is killed.
#[allow(dead_code)]
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the waits poll the page.
#[allow(dead_code)]
const POLL: Duration = Duration::from_millis(100);
/// What Chromium prints on stderr before the browser's WebSocket address.
#[allow(dead_code)]
const LISTENING: &str = "DevTools listening on ";

/// A headless Chromium with one page, driven over the DevTools protocol. Every method blocks
/// until Chromium has answered and panics, with what it saw, when something fails or times out.
#[allow(dead_code)]
pub(crate) struct Browser {
    /// The connection to the browser's DevTools endpoint.
    ws: WebSocket<TcpStream>,
    /// The id of the last call sent.
    next_id: u64,
    /// The flattened session attached to the page.
    session: String,
    /// How many `Page.loadEventFired` events have been seen.
    loads: u64,
    /// Errors the page reported: exceptions, `console.error` calls and error log entries.
    errors: Vec<String>,
    /// Why the page is gone (it crashed or was detached), once it is.
    gone: Option<String>,
    /// The Chromium process; dropped (killed) before the profile directory.
    process: Process,
    /// The temporary profile, config and cache directories; removed last.
    _profile: tempfile::TempDir,
}

#[allow(dead_code)]
impl Browser {
    /// Launches headless Chromium with a temporary profile and attaches to a new blank page
    /// whose viewport is `width`×`height` CSS pixels (device scale factor 1), with the `Page`,
    /// `Runtime` and `Log` domains enabled.
    /// Panics when Chromium is missing or does not come up within 30 s.
    pub(crate) fn launch(width: u32, height: u32) -> Browser {
        Self::launch_binary(&chromium(), width, height)
    }

    /// [`Browser::launch`], or `None` after printing why when Chromium is not installed and the
    /// environment variable `CI` is not set (the test can then skip). On CI, which installs
    /// Chromium, a missing Chromium is a panic.
    pub(crate) fn try_launch(width: u32, height: u32) -> Option<Browser> {
        let binary = chromium();
        if !binary.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no Chromium at {} on CI (install chromium or set HEARTH_CHROMIUM)",
                binary.display()
            );
            eprintln!(
                "skipping the browser test: no Chromium at {} (install chromium or set \
                 HEARTH_CHROMIUM)",
                binary.display()
            );
            return None;
        }
        Some(Self::launch_binary(&binary, width, height))
    }

    /// Navigates the page to `url` and waits (up to 30 s) for its load event. Panics when the
    /// navigation fails (e.g. the connection is refused). A same-document navigation (only the
    /// fragment changes) does not wait.
    pub(crate) fn goto(&mut self, url: &str) {
        let loads = self.loads;
        let navigation = self.call("Page.navigate", json!({ "url": url }));
        if let Some(error) = navigation.get("errorText").and_then(Value::as_str) {
            panic!("goto {url}: {error}");
        }
        if navigation.get("loaderId").is_none() {
            return;
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        while self.loads == loads {
            if let Err(error) = self.receive(deadline) {
                panic!(
                    "goto {url}: no load event within {} s ({error})\n{}",
                    CALL_TIMEOUT.as_secs(),
                    self.describe_page()
                );
            }
        }
    }

    /// Evaluates the JavaScript expression `js` in the page, awaits it if it is a promise, and
    /// returns its value as JSON: `null` for `undefined`, a string for `NaN`, `±Infinity`, `-0`
    /// and bigints, `{}` for DOM nodes, functions, maps and dates. Panics with the exception's
    /// text when it throws, or when the value cannot be copied (e.g. `window`).
    pub(crate) fn eval(&mut self, js: &str) -> Value {
        match self.evaluate(js) {
            Ok(object) => value_of(&object),
            Err(error) => panic!("eval `{}`: {error}", abbreviate(js)),
        }
    }

    /// Polls the JavaScript expression `js_predicate` every 100 ms until it is truthy (a throw
    /// counts as not yet); after `secs` seconds panics with `what`, the last value or error,
    /// and the page's URL and text.
    pub(crate) fn wait_for(&mut self, what: &str, js_predicate: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let last = match self.evaluate(js_predicate) {
                Ok(object) if truthy(&object) => return,
                Ok(object) => format!("it was {}", value_of(&object)),
                Err(error) => format!("it failed: {error}"),
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {secs} s waiting for {what} (`{}`; {last})\n{}",
                    abbreviate(js_predicate),
                    self.describe_page()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Clicks the first element matching the CSS `selector` with real mouse events (move,
    /// press, release at its centre), after waiting up to 10 s for it to exist, have a size,
    /// be enabled and not be covered by another element; scrolls it into view first.
    pub(crate) fn click(&mut self, selector: &str) {
        let (x, y) = self.clickable_point(selector);
        for (kind, button, buttons) in [
            ("mouseMoved", "none", 0),
            ("mousePressed", "left", 1),
            ("mouseReleased", "left", 0),
        ] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({
                    "type": kind,
                    "x": x,
                    "y": y,
                    "button": button,
                    "buttons": buttons,
                    "clickCount": 1,
                }),
            );
        }
    }

    /// Types `text` into the first element matching `selector`, replacing what it holds:
    /// clicks it, selects its content, then inserts `text` as one input (`Input.insertText`,
    /// which fires `beforeinput`/`input` like a keyboard or IME would). An empty `text` clears
    /// it with a Backspace key press.
    pub(crate) fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        let selected = self.eval(&format!(
            "(() => {{
                const e = document.querySelector({});
                if (!e) return false;
                if (!e.contains(document.activeElement)) e.focus();
                if (typeof e.select === 'function') e.select();
                else getSelection().selectAllChildren(e);
                return true;
            }})()",
            js_string(selector)
        ));
        assert!(
            selected == Value::Bool(true),
            "type_into: {selector} vanished after the click"
        );
        if text.is_empty() {
            for kind in ["rawKeyDown", "keyUp"] {
                self.call(
                    "Input.dispatchKeyEvent",
                    json!({
                        "type": kind,
                        "key": "Backspace",
                        "code": "Backspace",
                        "windowsVirtualKeyCode": 8,
                        "nativeVirtualKeyCode": 8,
                    }),
                );
            }
        } else {
            self.call("Input.insertText", json!({ "text": text }));
        }
    }

    /// The `innerText` of the first element matching `selector`, or `""` if none matches.
    pub(crate) fn text(&mut self, selector: &str) -> String {
        let text = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.innerText : ''; }})()",
            js_string(selector)
        ));
        text.as_str().unwrap_or_default().to_owned()
    }

    /// How many elements match `selector`.
    pub(crate) fn count(&mut self, selector: &str) -> usize {
        let count = self.eval(&format!(
            "document.querySelectorAll({}).length",
            js_string(selector)
        ));
        count
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(|| panic!("count {selector}: not a count: {count}"))
    }

    /// Saves a PNG of the page's viewport at `path`, creating its directory if needed.
    pub(crate) fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": false }),
        );
        let png = shot
            .get("data")
            .and_then(Value::as_str)
            .and_then(|data| data_encoding::BASE64.decode(data.as_bytes()).ok())
            .expect("Page.captureScreenshot gives base64 data");
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("write the screenshot {}: {e}", path.display()));
    }

    /// Every error the page has reported since launch, oldest first: uncaught exceptions
    /// (`Runtime.exceptionThrown`), `console.error` calls (`Runtime.consoleAPICalled`) and
    /// error log entries (`Log.entryAdded`: failed loads, CSP violations, …; except a missing
    /// `/favicon.ico`, which Chromium requests on its own). Makes a round trip to the page
    /// first, so errors reported before this call are included.
    pub(crate) fn console_errors(&mut self) -> Vec<String> {
        self.call("Runtime.evaluate", json!({ "expression": "0" }));
        self.errors.clone()
    }

    /// Sends the CDP command `method` with `params` to the page's session and returns its
    /// result; panics when Chromium answers with an error or not within 30 s.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.request(method, params, true, CALL_TIMEOUT)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Browser::call`] on the browser itself (no session), e.g. for the `Target` domain.
    pub(crate) fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.request(method, params, false, CALL_TIMEOUT)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Browser::launch`] with the Chromium at `binary`.
    fn launch_binary(binary: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("hearth-chromium-")
            .tempdir()
            .expect("create a temporary Chromium profile");
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                // Chromium's sandbox refuses to run as root, which CI containers are.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--metrics-recording-only",
                "--mute-audio",
                // Containers often have a small /dev/shm; Chromium then crashes on big pages.
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            // The crash reporter otherwise writes to ~/.config/chromium.
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "start Chromium {}: {e} (install chromium or set HEARTH_CHROMIUM)",
                binary.display()
            )
        });
        let stderr = child.stderr.take().expect("Chromium's stderr is piped");
        let mut process = Process(child);
        let url = devtools_url(stderr, &mut process);
        let address = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected DevTools address {url}"));
        let stream = TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("connect to Chromium's DevTools at {address}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .expect("set the DevTools read timeout");
        stream
            .set_write_timeout(Some(CALL_TIMEOUT))
            .expect("set the DevTools write timeout");
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools WebSocket handshake with {url}: {e}"));
        let mut browser = Browser {
            ws,
            next_id: 0,
            session: String::new(),
            loads: 0,
            errors: Vec::new(),
            gone: None,
            process,
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target
            .get("targetId")
            .and_then(Value::as_str)
            .expect("Target.createTarget gives a targetId")
            .to_owned();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached
            .get("sessionId")
            .and_then(Value::as_str)
            .expect("Target.attachToTarget gives a sessionId")
            .to_owned();
        for domain in ["Inspector", "Page", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        // The headless window's viewport is smaller than the window; make it exactly the size.
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser
    }

    /// Sends `method` with `params` (on the page's session if `on_page`) and reads messages,
    /// handling the events among them, until its reply; its `result`, or why there is none.
    fn request(
        &mut self,
        method: &str,
        params: Value,
        on_page: bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        if let Some(gone) = self.gone.as_ref().filter(|_| on_page) {
            return Err(format!("{method}: {gone}"));
        }
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if on_page {
            message["sessionId"] = Value::String(self.session.clone());
        }
        self.ws
            .send(Message::text(message.to_string()))
            .map_err(|e| format!("{method}: send to Chromium: {e}"))?;
        let sent = Instant::now();
        loop {
            let mut reply = self.receive(sent + timeout).map_err(|e| {
                format!(
                    "{method}: {e} (after {:.1} s)",
                    sent.elapsed().as_secs_f64()
                )
            })?;
            if reply.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = reply.get("error") {
                    let message = error.get("message").and_then(Value::as_str).unwrap_or("?");
                    return Err(match error.get("data") {
                        Some(data) => format!("{method} failed: {message} ({data})"),
                        None => format!("{method} failed: {message}"),
                    });
                }
                return Ok(reply.get_mut("result").map(Value::take).unwrap_or_default());
            }
            if let Some(gone) = self.gone.as_ref().filter(|_| on_page) {
                return Err(format!("{method}: {gone}"));
            }
        }
    }

    /// Reads the next message from Chromium before `deadline`, handles it if it is an event,
    /// and returns it.
    fn receive(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or("Chromium did not answer in time")?;
            self.ws
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| format!("set the DevTools read timeout: {e}"))?;
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let message: Value = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("bad DevTools message {text}: {e}"))?;
                    self.on_event(&message);
                    return Ok(message);
                }
                Ok(Message::Close(_)) => {
                    return Err("Chromium closed the DevTools connection".into());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("DevTools connection: {e}")),
            }
        }
    }

    /// Takes note of an event: page loads, errors, and the page crashing or going away.
    fn on_event(&mut self, message: &Value) {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return;
        };
        let params = &message["params"];
        match method {
            "Page.loadEventFired" => self.loads += 1,
            "Runtime.exceptionThrown" => {
                let details = &params["exceptionDetails"];
                self.errors.push(exception_text(details));
            }
            "Runtime.consoleAPICalled" if params["type"] == "error" => {
                let args = params["args"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let text: Vec<String> = args.iter().map(describe_object).collect();
                self.errors
                    .push(format!("console.error: {}", text.join(" ")));
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                let url = entry["url"].as_str().unwrap_or_default();
                // Chromium asks for /favicon.ico on its own; a server without one is no error.
                if entry["source"] == "network" && url.ends_with("/favicon.ico") {
                    return;
                }
                self.errors.push(format!(
                    "{} error: {}{}",
                    entry["source"].as_str().unwrap_or("log"),
                    entry["text"].as_str().unwrap_or_default(),
                    if url.is_empty() {
                        String::new()
                    } else {
                        format!(" ({url})")
                    }
                ));
            }
            "Inspector.targetCrashed" => {
                self.errors.push("the page crashed".into());
                self.gone = Some("the page crashed".into());
            }
            "Inspector.detached" => {
                let reason = params["reason"].as_str().unwrap_or("?");
                self.gone = Some(format!("DevTools detached from the page ({reason})"));
            }
            _ => {}
        }
    }

    /// Evaluates `js` on the page; the resulting remote object, or the exception's or the
    /// failure's text.
    fn evaluate(&mut self, js: &str) -> Result<Value, String> {
        let mut reply = self.request(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            true,
            CALL_TIMEOUT,
        )?;
        if let Some(details) = reply.get("exceptionDetails") {
            return Err(exception_text(details));
        }
        Ok(reply.get_mut("result").map(Value::take).unwrap_or_default())
    }

    /// The centre of the first element matching `selector` once it can be clicked; panics
    /// with the reason it cannot after 10 s.
    fn clickable_point(&mut self, selector: &str) -> (f64, f64) {
        let js = format!(
            "(() => {{
                const e = document.querySelector({});
                if (!e) return 'no element matches';
                e.scrollIntoView({{ block: 'center', inline: 'center', behavior: 'instant' }});
                const r = e.getBoundingClientRect();
                if (r.width === 0 || r.height === 0) return 'it has no size (hidden?)';
                if (e.disabled) return 'it is disabled';
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const hit = document.elementFromPoint(x, y);
                if (!hit) return 'its centre is outside the viewport';
                if (hit !== e && !e.contains(hit))
                    return 'it is covered by ' + hit.outerHTML.slice(0, 200);
                return [x, y];
            }})()",
            js_string(selector)
        );
        let deadline = Instant::now() + CLICK_TIMEOUT;
        loop {
            let why = match self.evaluate(&js) {
                Ok(object) => match value_of(&object) {
                    Value::Array(point) => match (point.first(), point.get(1)) {
                        (Some(x), Some(y)) => {
                            return (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                        }
                        _ => format!("unexpected point {point:?}"),
                    },
                    Value::String(why) => why,
                    other => format!("unexpected answer {other}"),
                },
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                panic!(
                    "click {selector}: not clickable after {} s: {why}\n{}",
                    CLICK_TIMEOUT.as_secs(),
                    self.describe_page()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The page's URL and the start of its text, for failure messages.
    fn describe_page(&mut self) -> String {
        let page = self.evaluate(
            "({ url: location.href, \
                text: document.body ? document.body.innerText.slice(0, 2000) : '' })",
        );
        match page.map(|object| value_of(&object)) {
            Ok(page) => format!(
                "page {}:\n{}",
                page["url"].as_str().unwrap_or("?"),
                page["text"].as_str().unwrap_or_default()
            ),
            Err(error) => format!("(the page could not be read: {error})"),
        }
    }
}

impl Drop for Browser {
    /// Asks Chromium to close and gives it a few seconds to exit; the [`Process`] field then
    /// kills it if it has not, and the profile directory is removed after that.
    fn drop(&mut self) {
        let asked = Instant::now();
        // Chromium may drop the connection before it replies: the outcome does not matter.
        let _ = self.request("Browser.close", json!({}), false, CLOSE_TIMEOUT);
        while asked.elapsed() < CLOSE_TIMEOUT && matches!(self.process.0.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The Chromium process, killed and reaped when dropped.
#[allow(dead_code)]
struct Process(Child);

impl Drop for Process {
    /// Kills Chromium (if it still runs) and waits for it.
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The Chromium binary to run: `HEARTH_CHROMIUM` (a path, or a name looked up in `PATH`), else
/// `/usr/bin/chromium`.
#[allow(dead_code)]
fn chromium() -> PathBuf {
    let Some(name) = std::env::var_os("HEARTH_CHROMIUM").filter(|name| !name.is_empty()) else {
        return PathBuf::from(DEFAULT_CHROMIUM);
    };
    let name = PathBuf::from(name);
    if name.components().count() > 1 {
        return name;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .unwrap_or(name)
}

/// Reads Chromium's stderr on a thread until the "DevTools listening on ws://…" line (which it
/// returns), within 30 s; the thread then keeps draining stderr so the pipe never fills.
/// Panics, with the end of stderr, when Chromium exits or times out first.
#[allow(dead_code)]
fn devtools_url(stderr: ChildStderr, process: &mut Process) -> String {
    let (lines, received) = mpsc::channel();
    thread::Builder::new()
        .name("chromium-stderr".into())
        .spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // Nobody listens once the address is known: drain silently.
                        let _ = lines.send(String::from_utf8_lossy(&line).trim_end().to_owned());
                    }
                }
            }
        })
        .expect("start the thread reading Chromium's stderr");
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    let mut tail = VecDeque::new();
    loop {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(at) = line.find(LISTENING) {
                    return line[at + LISTENING.len()..].trim().to_owned();
                }
                tail.push_back(line);
                if tail.len() > 30 {
                    tail.pop_front();
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "Chromium printed no DevTools address within {} s; its stderr ends with:\n{}",
                LAUNCH_TIMEOUT.as_secs(),
                Vec::from(tail).join("\n")
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "Chromium exited ({}) before printing its DevTools address; its stderr ends \
                 with:\n{}",
                process
                    .0
                    .wait()
                    .map_or_else(|e| e.to_string(), |status| status.to_string()),
                Vec::from(tail).join("\n")
            ),
        }
    }
}

/// `s` as a JavaScript string literal (JSON-escaped), to embed in evaluated code.
#[allow(dead_code)]
fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// The value of a `Runtime.RemoteObject` fetched by value, as JSON.
#[allow(dead_code)]
fn value_of(object: &Value) -> Value {
    object
        .get("value")
        .or_else(|| object.get("unserializableValue"))
        .cloned()
        .unwrap_or_default()
}

/// Whether a `Runtime.RemoteObject` is truthy in JavaScript.
#[allow(dead_code)]
fn truthy(object: &Value) -> bool {
    let value = &object["value"];
    match object["type"].as_str().unwrap_or_default() {
        "undefined" => false,
        "boolean" => value.as_bool().unwrap_or(false),
        "number" => match object["unserializableValue"].as_str() {
            Some(special) => special != "NaN" && special != "-0",
            None => value.as_f64().is_some_and(|n| n != 0.0),
        },
        "string" => value.as_str().is_some_and(|s| !s.is_empty()),
        "bigint" => object["unserializableValue"] != "0n",
        "object" => object["subtype"] != "null",
        _ => true,
    }
}

/// A console argument (a `Runtime.RemoteObject`) as text.
#[allow(dead_code)]
fn describe_object(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => object
            .get("description")
            .or_else(|| object.get("unserializableValue"))
            .or_else(|| object.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
    }
}

/// The text of `Runtime.ExceptionDetails`: its text ("Uncaught …") with the exception's
/// description (message and stack), or with the thrown value and where it was thrown.
#[allow(dead_code)]
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("exception");
    let exception = &details["exception"];
    if let Some(description) = exception.get("description").and_then(Value::as_str) {
        // Chromium's text may already end with the description's first line.
        let first = description.lines().next().unwrap_or_default();
        return match text.strip_suffix(first) {
            Some(_) if !first.is_empty() => format!("{text}{}", &description[first.len()..]),
            _ => format!("{text} {description}"),
        };
    }
    let thrown = match exception.get("value") {
        Some(Value::String(s)) => format!(" {s}"),
        Some(value) => format!(" {value}"),
        None => String::new(),
    };
    let at = match details["url"].as_str().filter(|url| !url.is_empty()) {
        Some(url) => format!(
            " ({url}:{}:{})",
            details["lineNumber"].as_u64().unwrap_or(0) + 1,
            details["columnNumber"].as_u64().unwrap_or(0) + 1
        ),
        None => String::new(),
    };
    format!("{text}{thrown}{at}")
}

/// The start of `js`, for failure messages.
#[allow(dead_code)]
fn abbreviate(js: &str) -> String {
    let flat = js.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}
