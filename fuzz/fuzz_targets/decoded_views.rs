//! Any bytes through the DLP scanner's decoded views (base64, base32, hex,
//! percent, HTML/JS escapes, quoted-printable, compressed streams, chains):
//! never a panic, never more view bytes than the budget, never more layers
//! than the bound; and the whole outbound scan over the same bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let views = dlp::decoded_views(data);
    let total: usize = views.views.iter().map(|v| v.bytes.len()).sum();
    assert!(total <= data.len() * 4 + (1 << 20), "views of {} bytes hold {total}", data.len());
    assert!(views.views.iter().all(|v| v.chain.len() <= dlp::MAX_DEPTH));
    static SCANNER: OnceLock<dlp::Scanner> = OnceLock::new();
    let _ = SCANNER.get_or_init(dlp::Scanner::builtin).scan(data, None);
});
