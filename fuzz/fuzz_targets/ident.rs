//! Infohash and magnet parsing: never a panic, every error one line (it is a 400 body), and a
//! parsed magnet rebuilt from its parts parses to the same thing.
#![no_main]

use confluence_core::ident;
use libfuzzer_sys::fuzz_target;

fn one_line(e: &ident::IdentError) {
    let m = e.http_message();
    assert!(!m.contains('\n') && !m.contains('\r'), "{m:?}");
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Err(e) = ident::parse_hex(&s) {
        one_line(&e);
    }
    match ident::parse_magnet(&s) {
        Ok(m) => {
            let mut again = format!("magnet:?xt=urn:btih:{}", m.info_hash);
            if let Some(n) = &m.name {
                again.push_str(&format!("&dn={}", enc(n)));
            }
            for tr in &m.trackers {
                again.push_str(&format!("&tr={}", enc(tr)));
            }
            assert_eq!(ident::parse_magnet(&again), Ok(m));
        }
        Err(e) => one_line(&e),
    }
    let mid = (0..=s.len() / 2)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    let (a, b) = s.split_at(mid);
    if let Err(e) = ident::resolve(Some(a), Some(b)) {
        one_line(&e);
    }
    let _ = ident::parse_query(&s);
});
