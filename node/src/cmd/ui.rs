//! `hearth ui`: a one-time login address for the web app the daemon serves (see
//! [`crate::api::session`]). The command runs inside the daemon, where its passphrase was
//! checked over the owner-only socket; the session it prepares acts with that unlocked
//! identity, so the browser never sees the passphrase.

use crate::api::session::{LOGIN_TTL, Unlocked};
use crate::app::{Ctx, refused};
use crate::fail::Failure;
use serde_json::json;

/// The page in the home that forwards the browser to the login address (`--open`).
const OPEN_PAGE: &str = "ui-open.html";

/// `hearth ui …`.
#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// Also open the address in the default browser (xdg-open, or open on macOS).
    #[arg(long)]
    pub open: bool,
}

/// `hearth ui`: prints (and with `--open` opens) the login address.
pub fn ui(ctx: &Ctx, args: UiArgs) -> Result<(), Failure> {
    let Some(d) = &ctx.daemon else {
        return Err(refused(
            "the web app is served by the running node: start it with `hearth run`, then run `hearth ui` again",
        ));
    };
    let (_, identity) = ctx.unlock()?;
    let code = d.api.sessions().issue_login(Unlocked {
        identity,
        passphrase: d.passphrase.clone(),
    });
    let url = format!("{}/#login={}", d.api.origin(), code.as_str());
    let opened = args.open && open_browser(&ctx.home, &url);
    let minutes = LOGIN_TTL.as_secs() / 60;
    ctx.print(
        json!({"url": url, "expires_in_seconds": LOGIN_TTL.as_secs(), "opened": opened}),
        || {
            let mut s = format!(
                "Open this address in your browser on this computer (it works once, within {minutes} minutes):\n  {url}"
            );
            if args.open && !opened {
                s.push_str("\n(no browser could be started: open the address yourself)");
            }
            s
        },
    );
    Ok(())
}

/// Starts the desktop's browser on `url`; false if none could be started.
///
/// A program's arguments are visible to every user of the machine (`ps`), so the login
/// address never is one: the browser is sent to a page in the home (0700; the file 0600)
/// that forwards to it, removed once the code has expired.
fn open_browser(home: &crate::home::Home, url: &str) -> bool {
    let page = home.dir().join(OPEN_PAGE);
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"0;url={url}\"><title>Hearth</title>\
         <p>Opening Hearth…</p>\n"
    );
    if crate::home::atomic_write(&page, html.as_bytes()).is_err() {
        return false;
    }
    let remove = page.clone();
    std::thread::spawn(move || {
        std::thread::sleep(LOGIN_TTL);
        let _ = std::fs::remove_file(remove);
    });
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}
