//! Unit tests of the public-URL rules.

use super::*;
use actix_web::http::header::{HeaderName, HeaderValue};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

fn resolve(opts: &Options, peer: &str, h: &[(&str, &str)]) -> String {
    BaseUrl::resolve(opts, Some(peer.parse().unwrap()), &headers(h), LOCAL).url("/x")
}

#[test]
fn cidrs() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.200.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
    assert!(Cidr::parse("127.0.0.5")
        .unwrap()
        .contains("127.0.0.5".parse().unwrap()));
    assert!(!Cidr::parse("127.0.0.5")
        .unwrap()
        .contains("127.0.0.6".parse().unwrap()));
    assert!(Cidr::parse("fd00::/8")
        .unwrap()
        .contains("fdab::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    for bad in [
        "",
        "10.0.0.0/33",
        "x/8",
        "10.0.0.0/",
        "::/129",
        "1.2.3.4/-1",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
    assert!(TrustedProxies::default().trusts("127.9.9.9".parse().unwrap()));
    assert!(!TrustedProxies::default().trusts("192.168.1.1".parse().unwrap()));
    assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    assert!(TrustedProxies::parse("1.2.3.4, 10.0.0.0/8").is_ok());
}

#[test]
fn public_url_flag() {
    let b = BaseUrl::parse("https://media.example:8443/torrents/").unwrap();
    assert_eq!(
        b.url("/playlist"),
        "https://media.example:8443/torrents/playlist"
    );
    assert_eq!(
        BaseUrl::parse("HTTP://[::1]").unwrap().url("/"),
        "http://[::1]/"
    );
    for bad in [
        "ftp://x",
        "https://",
        "https://a b",
        "https://x/?q",
        "https://x/../y",
        "x.example/p",
        "https://u@x/",
    ] {
        assert!(BaseUrl::parse(bad).is_err(), "{bad}");
    }
    let opts = Options {
        public_url: Some(BaseUrl::parse("https://pub.example/p").unwrap()),
        ..Options::default()
    };
    let h = [("host", "evil.example"), ("x-forwarded-host", "evil2")];
    assert_eq!(resolve(&opts, "127.0.0.1", &h), "https://pub.example/p/x");
}

#[test]
fn forwarded_only_from_trusted_peers() {
    let opts = Options::default();
    let h = [
        ("host", "127.0.0.1:8080"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "media.example"),
        ("x-forwarded-prefix", "/torrents/"),
    ];
    assert_eq!(
        resolve(&opts, "127.0.0.1", &h),
        "https://media.example/torrents/x"
    );
    assert_eq!(resolve(&opts, "192.0.2.7", &h), "http://127.0.0.1:8080/x");
    let fwd = [
        ("host", "inner:1"),
        (
            "forwarded",
            "for=1.2.3.4;host=evil, for=5.6.7.8;proto=https;host=\"outer.example\"",
        ),
        ("x-forwarded-host", "ignored"),
    ];
    assert_eq!(resolve(&opts, "::1", &fwd), "https://outer.example/x");
    let list = [("host", "h"), ("x-forwarded-host", "spoofed, real.example")];
    assert_eq!(resolve(&opts, "127.0.0.2", &list), "http://real.example/x");
}

#[test]
fn invalid_values_are_ignored() {
    let opts = Options::default();
    let h = [
        ("host", "ok.example"),
        ("x-forwarded-proto", "javascript"),
        ("x-forwarded-host", "evil.example/path"),
        ("x-forwarded-prefix", "/a/../b"),
    ];
    assert_eq!(resolve(&opts, "127.0.0.1", &h), "http://ok.example/x");
    let bad_host = [("host", "a\"b<c>")];
    assert_eq!(
        resolve(&opts, "127.0.0.1", &bad_host),
        "http://127.0.0.1:8080/x"
    );
    assert!(valid_authority("[::1]:80") && valid_authority("a-b.c:65535"));
    assert!(!valid_authority("a:65536") && !valid_authority("[zz]") && !valid_authority(":80"));
    assert_eq!(clean_prefix("/"), Some(String::new()));
    assert_eq!(clean_prefix("/t%C3%A9/x/").as_deref(), Some("/t%C3%A9/x"));
    assert_eq!(clean_prefix("t"), None);
    assert_eq!(clean_prefix("/a//b"), None);
    assert_eq!(clean_prefix("/a<b"), None);
}

#[test]
fn encodes_paths() {
    assert_eq!(
        encode_path("with space/ü.txt".as_bytes()),
        "with%20space/%C3%BC.txt"
    );
    assert_eq!(encode_path(b"a:b/%#?&\xff"), "a%3Ab/%25%23%3F%26%FF");
    let ih = InfoHash([0xab; 20]);
    let b = BaseUrl::parse("https://h/p").unwrap();
    assert_eq!(
        b.data_url(&ih, b"d/e 1.mkv"),
        format!("https://h/p/data/infohash/{ih}/d/e%201.mkv")
    );
    assert_eq!(
        b.listing_url(&ih, b""),
        format!("https://h/p/data/infohash/{ih}/")
    );
    assert_eq!(
        b.listing_url(&ih, b"d"),
        format!("https://h/p/data/infohash/{ih}/d/")
    );
}
