//! The one rule for text that people will read: names of tenants, keys and
//! machines, suspension reasons. A dashboard, a log viewer or a terminal
//! shows these verbatim, so they may not carry control characters (which
//! can rewrite a terminal line, as `\u{1b}[31m` does) or the Unicode
//! characters that reorder what is displayed (U+202E shows `exe.txt` for
//! `txt.exe`).

/// Why a text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not contain control characters")]
    Control,
    #[error("must not contain bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069)")]
    Bidi,
    #[error("must not contain line or paragraph separators")]
    Separator,
}

/// Characters that change the direction in which the text around them is
/// displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Accepts `text` if it can be shown to a person as it is.
pub fn check_display_text(text: &str) -> Result<(), TextError> {
    for c in text.chars() {
        if c.is_control() {
            return Err(TextError::Control);
        }
        if is_bidi_control(c) {
            return Err(TextError::Bidi);
        }
        if matches!(c, '\u{2028}' | '\u{2029}') {
            return Err(TextError::Separator);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_in_any_script_is_accepted() {
        for text in ["prod-01", "Ünïcødé GmbH", "東京オフィス", "שלום עולם", "مرحبا", "a b"] {
            assert_eq!(check_display_text(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for text in ["a\u{0}b", "a\u{1b}[31mred", "line\nbreak", "tab\there", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(check_display_text(text), Err(TextError::Control), "{text:?}");
        }
    }

    #[test]
    fn characters_that_reorder_the_display_are_refused() {
        for text in ["invoice\u{202E}fdp.exe", "\u{2066}x\u{2069}", "a\u{200F}", "a\u{061C}"] {
            assert_eq!(check_display_text(text), Err(TextError::Bidi), "{text:?}");
        }
        assert_eq!(check_display_text("a\u{2028}b"), Err(TextError::Separator));
    }
}
