//! `Secret<T>`: a value that must never be printed, logged or serialised by
//! accident.
//!
//! `Debug` and `Display` print `<redacted>`; the only way to read the value is
//! [`Secret::expose`], which makes every read greppable. The value is zeroed
//! when dropped. This crate knows nothing of where secrets come from or go.

#![forbid(unsafe_code)]

use std::fmt;
use zeroize::Zeroize;

/// A secret value. Reading it requires an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wrap a value. The caller must not keep another copy around.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Read the value. Every call site is a place a secret leaves the type:
    /// keep them few and obvious.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret".to_string());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:#?}", vec![s.clone()]), "[\n    Secret(<redacted>),\n]");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
