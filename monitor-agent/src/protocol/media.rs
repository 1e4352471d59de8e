//! Media types as the inventory files them, whatever protocol carried the header.

/// The media type of a `Content-Type` value, without parameters, lower-cased; `None` for
/// a value no real peer sends (empty, over 100 bytes, or not printable ASCII).
pub(crate) fn media_type(v: &[u8]) -> Option<String> {
    let essence = v.split(|&b| b == b';').next().unwrap_or(&[]).trim_ascii();
    if essence.is_empty() || essence.len() > 100 || !essence.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    Some(String::from_utf8_lossy(essence).to_ascii_lowercase())
}
