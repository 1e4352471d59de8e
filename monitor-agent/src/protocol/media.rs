//! Media types as the inventory files them, whatever protocol carried the header.

use crate::text::Text;

/// The media type of a `Content-Type` value, without parameters, lower-cased; `None` for
/// a value no real peer sends (empty, over 100 bytes, or not printable ASCII).
pub(crate) fn media_type(v: &[u8]) -> Option<Text> {
    let essence = v.split(|&b| b == b';').next().unwrap_or(&[]).trim_ascii();
    if essence.is_empty() || essence.len() > 100 || !essence.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    // Printable ASCII, so UTF-8 already.
    let text = std::str::from_utf8(essence).ok()?;
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Text::interned(&text.to_ascii_lowercase()))
    } else {
        Some(Text::interned(text))
    }
}
