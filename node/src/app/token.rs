//! Printing a token (a grant, a request, a credential) in text, JSON and QR forms.

use super::Ctx;
use crate::fail::{Failure, code};
use hearth_core::grant::request::SignedError;
use serde_json::{Value, json};

/// A terminal drawing of `token` as a QR code.
fn print_qr(token: &str) -> Result<String, Failure> {
    let code = qrcode::QrCode::new(token.as_bytes())
        .map_err(|e| Failure::new(code::IO, format!("cannot make a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// `token` as a QR code in SVG; invalid input when it is too long for one.
pub fn qr_svg(token: &str) -> Result<String, Failure> {
    let code = qrcode::QrCode::new(token.as_bytes())
        .map_err(|e| Failure::new(code::INVALID, format!("cannot make a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(300, 300)
        .build())
}

/// Writes `token` as a QR code SVG file at `path`.
fn write_qr_svg(token: &str, path: &std::path::Path) -> Result<(), Failure> {
    crate::home::atomic_write(path, qr_svg(token)?.as_bytes())
}

/// Prints a token (and its QR forms when asked) with extra JSON fields.
pub fn emit_token(
    ctx: &Ctx,
    mut json: Value,
    token: &str,
    id: &str,
    qr: bool,
    qr_svg: Option<&std::path::Path>,
    headline: String,
) -> Result<(), Failure> {
    if let Some(p) = qr_svg {
        write_qr_svg(token, p)?;
    }
    let qr_text = if qr { Some(print_qr(token)?) } else { None };
    json["id"] = json!(id);
    json["token"] = json!(token);
    ctx.print(json, || {
        let mut s = format!("{headline}\n  id:    {id}\n  token: {token}");
        if let Some(q) = &qr_text {
            s.push('\n');
            s.push_str(q);
        }
        s
    });
    Ok(())
}

/// A signed token (a request, a credential) that did not check: malformed is invalid input,
/// anything else (a bad signature, say) refused.
pub fn token_refused(what: &str, e: SignedError) -> Failure {
    let c = match e {
        SignedError::Malformed(_) => code::INVALID,
        _ => code::REFUSED,
    };
    Failure::new(c, format!("{what} refused: {e}"))
}
