//! Command-line flags.
//!
//! The original (anacrolix/confluence) parses its flags with anacrolix/tagflag,
//! so its users write Go-style flags: one dash, values after `=`
//! (`-addr=localhost:8080`, `-dht=false`, `-seed`). Scripts written for it must
//! keep working, so we accept that form as well as the usual `--addr value`.
//! clap does the real work (definitions, help, errors); [`go_style_to_clap`]
//! first rewrites argv so that clap only ever sees `--name[=value]`.
//!
//! Deliberate differences from the original:
//! * `-name value` (separate value) and `--name` also work; tagflag rejects both.
//!   A value that itself starts with `-` must be attached with `=`
//!   (`-authToken=-x`): a separate `-x` is taken as a flag.
//! * Every usage error (unknown flag, bad value, stray argument) exits 2, the
//!   conventional code; tagflag exits 1 for some of them.
//! * Flags we cannot honour (the sqlite storage family and two research/debug
//!   aids) exit 2 with a message saying what to do instead, rather than being
//!   silently ignored.
//! * `-dhtPublicIP` (only in old READMEs) is accepted as an alias of
//!   `-publicIp4`/`-publicIp6`.

// Until main uses every field.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// A list of `host:port` strings.
///
/// A type alias rather than a plain `Vec<String>` so that clap's derive treats
/// `-dhtBootstrap=a,b` as ONE value parsed by [`parse_host_port_list`] (which
/// also lets an empty value mean "no routers") instead of a multi-value flag.
pub type HostPortList = Vec<String>;

/// Parsed command-line flags. Field docs are the `-h` help text.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "confluence",
    about = "A torrent client as an HTTP service",
    after_help = "Flags may be written Go-style with one dash and `=` \
                  (-addr=localhost:8080, -dht=false, -seed) or with two dashes \
                  (--addr localhost:8080). Boolean flags take their value only \
                  after `=`.",
    // Go's flag packages let a repeated flag override the earlier one; clap
    // errors by default. Vec (append) flags still accumulate.
    args_override_self = true
)]
pub struct Flags {
    /// HTTP listen address.
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        default_value = "localhost:8080"
    )]
    pub addr: String,

    /// Peer listen address (TCP and uTP; the DHT uses the same UDP port).
    #[arg(
        long = "torrentAddr",
        value_name = "HOST:PORT",
        default_value = ":42069"
    )]
    pub torrent_addr: String,

    /// Piece cache capacity in bytes; go-humanize syntax (10GB = 10^10, 10GiB = 10*2^30, a bare number is bytes).
    #[arg(long = "cacheCapacity", value_name = "BYTES", default_value = "10GiB", value_parser = parse_bytes)]
    pub cache_capacity: u64,

    /// Do not limit the piece cache (no eviction).
    #[arg(long = "unlimitedCache", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub unlimited_cache: bool,

    /// How long a torrent stays referenced after each request (0 releases it at once); Go duration syntax.
    #[arg(long = "torrentGrace", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub torrent_grace: Duration,

    /// Drop a torrent (and clean up its storage) when its last reference goes.
    #[arg(long = "expireTorrents", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub expire_torrents: bool,

    /// Store torrent data as plain files under DIR/<infohash>/ (deleted when the torrent is dropped).
    #[arg(long = "fileDir", value_name = "DIR")]
    pub file_dir: Option<PathBuf>,

    /// Keep torrents in the session after their last request, seeding what the cache holds
    /// (otherwise they leave -torrentGrace after it, and upload only while in use).
    #[arg(long = "seed", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub seed: bool,

    /// Also serve /metrics and /debug/... on -addr.
    #[arg(long = "debugOnMain", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub debug_on_main: bool,

    /// Use the DHT.
    #[arg(long = "dht", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub dht: bool,

    /// Do not announce to trackers.
    #[arg(long = "disableTrackers", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub disable_trackers: bool,

    /// Allow TCP peer connections.
    #[arg(long = "tcpPeers", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub tcp_peers: bool,

    /// Allow uTP peer connections.
    #[arg(long = "utpPeers", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub utp_peers: bool,

    /// Accepted for compatibility; no effect: librqbit always exchanges peers (PEX), a warning says so when false.
    #[arg(long = "pex", value_name = "BOOL", default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub pex: bool,

    /// Tracker added as one extra tier to every torrent (and to /upload output); repeatable.
    #[arg(long = "implicitTracker", value_name = "URL")]
    pub implicit_tracker: Vec<String>,

    /// Ignore the trackers of cached metainfo when adding a torrent.
    #[arg(long = "overrideTrackers", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub override_trackers: bool,

    // Read it through `public_ip4()`, which also honours -dhtPublicIP.
    /// Public IPv4 address; only written as a node into /upload's .torrent (librqbit cannot be told its public IP: peers and trackers report it).
    #[arg(long = "publicIp4", value_name = "IPV4")]
    pub public_ip4: Option<Ipv4Addr>,

    // Read it through `public_ip6()`, which also honours -dhtPublicIP.
    /// Public IPv6 address; only written as a node into /upload's .torrent (librqbit cannot be told its public IP: peers and trackers report it).
    #[arg(long = "publicIp6", value_name = "IPV6")]
    pub public_ip6: Option<Ipv6Addr>,

    /// Old name: sets -publicIp4 or -publicIp6, depending on the address family.
    #[arg(long = "dhtPublicIP", value_name = "IP")]
    pub dht_public_ip: Option<IpAddr>,

    /// Map the peer port on the router with UPnP/NAT-PMP.
    #[arg(long = "uPnPPortForwarding", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub upnp_port_forwarding: bool,

    /// Directory for the piece cache and the metainfo cache.
    #[arg(long = "dataDir", value_name = "DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,

    /// Comma-separated DHT bootstrap nodes (host:port); empty means none [default: librqbit's public routers].
    #[arg(long = "dhtBootstrap", value_name = "HOST:PORT,...", value_parser = parse_host_port_list)]
    pub dht_bootstrap: Option<HostPortList>,

    /// Also expose torrents as files through a FUSE mount at DIR.
    #[arg(long = "mount", value_name = "DIR")]
    pub mount: Option<PathBuf>,

    /// Require this token from HTTP clients; also read from $CONFLUENCE_AUTH_TOKEN, which keeps
    /// it out of `ps` (the flag wins) [default: no authentication, like the original].
    #[arg(long = "authToken", value_name = "TOKEN")]
    pub auth_token: Option<String>,

    /// Also be a DLNA/UPnP media server for TVs: SSDP on UDP 1900, control and streams on -addr.
    #[arg(long = "dlna", value_name = "BOOL", default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          action = ArgAction::Set, value_parser = parse_go_bool)]
    pub dlna: bool,

    /// The DLNA server's name on TVs [default: confluence on <host name>].
    #[arg(long = "dlnaName", value_name = "NAME")]
    pub dlna_name: Option<String>,

    /// Comma-separated IPv4 addresses or interface names to announce the DLNA server on
    /// [default: -addr's address; every interface when -addr listens on all].
    #[arg(long = "dlnaInterfaces", value_name = "IP|IFACE,...")]
    pub dlna_interfaces: Option<String>,
    /// Base of the absolute URLs the daemon hands out (playlists, listings), e.g.
    /// https://media.example/torrents [default: from the request: forwarding headers of
    /// -trustedProxies, else Host].
    #[arg(long = "publicURL", value_name = "URL", value_parser = confluence_http::public_url::BaseUrl::parse)]
    pub public_url: Option<confluence_http::public_url::BaseUrl>,

    /// Comma-separated CIDRs whose Forwarded/X-Forwarded-* headers are believed; empty: none.
    #[arg(long = "trustedProxies", value_name = "CIDR,...", default_value = "127.0.0.0/8,::1",
          value_parser = confluence_http::public_url::TrustedProxies::parse)]
    pub trusted_proxies: confluence_http::public_url::TrustedProxies,

    /// Comma-separated origins (scheme://host[:port]) allowed to read /data, /info and
    /// /playlist from scripts (CORS); * allows every origin [default: none].
    #[arg(long = "corsOrigins", value_name = "ORIGIN,...", default_value = "",
          value_parser = confluence_http::cors::CorsOrigins::parse)]
    pub cors_origins: confluence_http::cors::CorsOrigins,
    /// Name sent as X-Confluence-Node on every answer [default: HOSTNAME:PORT, the port of -addr].
    #[arg(long = "nodeName", value_name = "NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,

    /// Scale-out behind nginx: every daemon of the upstream, spelled exactly as its `server` lines
    /// (HOST:PORT,...); a POST /metainfo or /upload whose torrent another daemon owns is forwarded
    /// there, and /status shows every daemon.
    #[arg(long = "clusterPeers", value_name = "HOST:PORT,...", value_parser = parse_peer_list)]
    pub cluster_peers: Option<HostPortList>,

    /// This daemon's entry in -clusterPeers [default: -addr as written].
    #[arg(long = "clusterSelf", value_name = "HOST:PORT")]
    pub cluster_self: Option<String>,

    /// Log format on stderr: `text` (colours only on a terminal) or `json` (one object per line).
    #[arg(long = "logFormat", value_name = "FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    pub log_format: String,

    /// At most this many torrents wait for metadata at once; beyond it a new infohash gets 429 (HTTP) or EAGAIN (mount); 0 is no limit.
    #[arg(long = "maxPendingTorrents", value_name = "N", default_value = "256")]
    pub max_pending_torrents: usize,

    /// At most this many metainfo files kept under -dataDir/torrents; beyond it the least recently used of torrents not in use and with no cached pieces is removed; 0 is no limit.
    #[arg(long = "maxStoredMetainfo", value_name = "N", default_value = "10000")]
    pub max_stored_metainfo: usize,
}

/// The environment variable `-authToken` falls back to.
pub const AUTH_TOKEN_ENV: &str = "CONFLUENCE_AUTH_TOKEN";

impl Flags {
    /// `-authToken` from `env` (the value of [`AUTH_TOKEN_ENV`]) when the flag is absent; an
    /// empty value means no token, as an empty flag does.
    pub fn token_from_env(&mut self, env: Option<OsString>) {
        if self.auth_token.is_none() {
            self.auth_token = env.map(|v| v.to_string_lossy().into_owned());
        }
    }
}

impl Flags {
    /// -publicIp4, or else an IPv4 -dhtPublicIP.
    pub fn public_ip4(&self) -> Option<Ipv4Addr> {
        self.public_ip4.or(match self.dht_public_ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        })
    }

    /// -publicIp6, or else an IPv6 -dhtPublicIP.
    pub fn public_ip6(&self) -> Option<Ipv6Addr> {
        self.public_ip6.or(match self.dht_public_ip {
            Some(IpAddr::V6(ip)) => Some(ip),
            _ => None,
        })
    }
}

/// Why parsing stopped: what to print, and the process exit code.
///
/// Code 0 is `-h` (message goes to stdout); anything else is a usage error
/// (stderr). A value rather than an exit so that tests can inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsError {
    pub code: i32,
    pub message: String,
}

impl FlagsError {
    /// Prints the message to stdout (code 0) or stderr. Write errors (a closed
    /// pipe) are ignored: `print!` would panic on them.
    pub fn print(&self) {
        let _ = if self.code == 0 {
            writeln!(std::io::stdout(), "{}", self.message)
        } else {
            writeln!(std::io::stderr(), "{}", self.message)
        };
    }

    /// Prints the message and exits with the code.
    pub fn exit(&self) -> ! {
        self.print();
        std::process::exit(self.code)
    }
}

impl fmt::Display for FlagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FlagsError {}

impl From<clap::Error> for FlagsError {
    fn from(err: clap::Error) -> Self {
        FlagsError {
            code: err.exit_code(),
            // Plain text (no colour codes); clap ends it with a newline.
            message: err.to_string().trim_end().to_owned(),
        }
    }
}

/// Parses the process's arguments; prints and exits on error or `-h`.
pub fn parse() -> Flags {
    let mut f = parse_from(std::env::args_os()).unwrap_or_else(|err| err.exit());
    f.token_from_env(std::env::var_os(AUTH_TOKEN_ENV));
    f
}

/// Parses `args`, whose first element is the program name (as in argv).
pub fn parse_from<I: IntoIterator<Item = OsString>>(args: I) -> Result<Flags, FlagsError> {
    let args = go_style_to_clap(args)?;
    Ok(Flags::try_parse_from(args)?)
}

/// Rewrites Go-style argv into what clap expects, and rejects the flags we
/// cannot honour.
///
/// `-name[=value]` becomes `--name[=value]`; `-h` and `-help` become `--help`.
/// Unknown one-dash names are rewritten too, so that clap reports
/// `--nosuch` (with a "similar argument" tip) rather than the short flag `-n`.
/// The only short flag is clap's `-h`, so nothing else is lost.
/// Everything after a bare `--` is passed through untouched (and clap then
/// rejects it, as there are no positional arguments).
fn go_style_to_clap<I: IntoIterator<Item = OsString>>(
    args: I,
) -> Result<Vec<OsString>, FlagsError> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect(); // program name
    let mut flags_ended = false;
    for arg in args {
        // Non-UTF-8 cannot be a flag name; clap will reject it as a value or argument.
        let Some(s) = arg.to_str().filter(|_| !flags_ended) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            flags_ended = true;
            out.push(arg);
            continue;
        }
        let body = s.strip_prefix("--").or_else(|| s.strip_prefix('-'));
        let Some(body) = body.filter(|b| !b.is_empty()) else {
            out.push(arg); // not a flag (or a lone `-`): a positional argument
            continue;
        };
        let name = body.split_once('=').map_or(body, |(name, _value)| name);
        if let Some(message) = unsupported_flag(name) {
            return Err(FlagsError { code: 2, message });
        }
        if s.starts_with("--") {
            out.push(arg);
        } else if body == "h" || body == "help" {
            out.push("--help".into());
        } else {
            out.push(format!("-{s}").into());
        }
    }
    Ok(out)
}

/// The message for a flag of the original that we recognise but cannot honour.
fn unsupported_flag(name: &str) -> Option<String> {
    let why = match name {
        "sqliteStorage" | "initSqliteStorageSchema" | "sqliteJournalMode" => {
            "is not supported: pieces are kept in a moka-indexed file cache under -dataDir; \
             drop the flag (or use -fileDir for plain files)"
        }
        "collectCamouflageData" => {
            "is not supported (it recorded peer handshakes for research); drop the flag"
        }
        "analyzePeerUploadOrder" => {
            "is not supported (a debug aid of anacrolix/torrent with no librqbit equivalent); \
             drop the flag"
        }
        _ => return None,
    };
    Some(format!("error: -{name} {why}"))
}

/// Default `-dataDir`: the XDG cache directory, so that a cache that may grow
/// to many GiB does not land in the working directory as the original's did.
/// `$XDG_CACHE_HOME/confluence`, else `$HOME/.cache/confluence`, else
/// `./confluence-data`. Per the XDG spec, an empty or relative
/// `$XDG_CACHE_HOME` is ignored.
pub fn default_data_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    if let Some(xdg) = xdg.filter(|dir| dir.is_absolute()) {
        return xdg.join("confluence");
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("confluence"),
        None => PathBuf::from("confluence-data"),
    }
}

/// Go's strconv.ParseBool, which tagflag uses for boolean flags.
fn parse_go_bool(s: &str) -> Result<bool, String> {
    confluence_core::gocompat::parse_bool(s)
        .ok_or_else(|| format!("invalid boolean {s:?} (use true or false)"))
}

/// A byte count in go-humanize ParseBytes syntax (tagflag.Bytes), e.g.
/// `10GiB`, `500MB`, `1.5 GB`, `12345`.
///
/// Units are case-insensitive, `B` is optional: `k`/`kB` = 1000, `Ki`/`KiB` =
/// 1024, and so on up to `E`/`EiB`. Commas in the number are ignored, as in
/// go-humanize. Unlike go-humanize (which goes through a float64), the
/// arithmetic is exact; a fraction of a byte is truncated.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let number: String = s[..num_end].chars().filter(|&c| c != ',').collect();
    let unit = s[num_end..].trim().to_ascii_lowercase();

    let multiplier: u128 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u128.pow(2),
        "g" | "gb" => 1000u128.pow(3),
        "t" | "tb" => 1000u128.pow(4),
        "p" | "pb" => 1000u128.pow(5),
        "e" | "eb" => 1000u128.pow(6),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        "pi" | "pib" => 1 << 50,
        "ei" | "eib" => 1 << 60,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };

    let (int_part, frac_part) = number.split_once('.').unwrap_or((&number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(format!("invalid size {s:?}: expected a number, e.g. 10GiB"));
    }
    let too_large = || format!("invalid size {s:?}: too large");

    // At most 20 fraction digits: 10^20 * 2^60 still fits in a u128, and
    // further digits are far below one byte.
    let frac_digits = &frac_part[..frac_part.len().min(20)];
    let frac_bytes = if frac_digits.is_empty() {
        0
    } else {
        let numerator: u128 = frac_digits.parse().map_err(|_| too_large())?;
        numerator * multiplier / 10u128.pow(frac_digits.len() as u32)
    };
    let int_value: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| too_large())? // only fails past u128::MAX
    };
    int_value
        .checked_mul(multiplier)
        .and_then(|bytes| bytes.checked_add(frac_bytes))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(too_large)
}

/// A duration in Go's time.ParseDuration syntax, which tagflag uses:
/// `1m`, `30s`, `1h30m`, `1.5s`, `500ms`, `10us`/`10µs`, `100ns`, or a bare `0`.
///
/// A sign is allowed as in Go, but a negative duration is an error: a
/// negative grace period means nothing. As in Go, the total must fit in an
/// int64 of nanoseconds (about 292 years).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("invalid duration {s:?}: {why} (e.g. 30s, 1m, 1h30m, 500ms)");

    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid("empty"));
    }

    let mut total_nanos: u64 = 0;
    while !rest.is_empty() {
        // One component: digits[.digits] followed by a unit.
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after_int) = rest.split_at(int_end);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let end = after_dot
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_dot.len());
                after_dot.split_at(end)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid("expected a number"));
        }
        let unit_end = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_end);
        let unit_nanos: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000, // U+00B5 and U+03BC, as in Go
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid(&format!("unknown unit {unit:?}"))),
        };

        let too_large = || invalid("too large");
        let int_value: u64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        // At most 18 fraction digits: 10^18 * 3.6e12 (ns in an hour) fits in
        // a u128, and further digits are worth less than a nanosecond.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac_nanos = if frac_digits.is_empty() {
            0
        } else {
            let numerator: u128 = frac_digits.parse().map_err(|_| too_large())?;
            let scaled = numerator * u128::from(unit_nanos) / 10u128.pow(frac_digits.len() as u32);
            u64::try_from(scaled).map_err(|_| too_large())?
        };
        total_nanos = int_value
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(frac_nanos))
            .and_then(|n| n.checked_add(total_nanos))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(too_large)?;
        rest = after_unit;
    }

    if negative && total_nanos != 0 {
        return Err(invalid("negative durations are not allowed"));
    }
    Ok(Duration::from_nanos(total_nanos))
}

/// A comma-separated `host:port` list for -dhtBootstrap. An empty value is an
/// empty list (no bootstrap nodes, e.g. for an isolated test network).
fn parse_host_port_list(s: &str) -> Result<HostPortList, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|entry| {
            let entry = entry.trim();
            match entry.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(entry.to_owned())
                }
                _ => Err(format!(
                    "invalid DHT bootstrap node {entry:?}: expected host:port"
                )),
            }
        })
        .collect()
}

/// `-nodeName`: it goes into a header, so printable text only.
fn parse_node_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_control()) || s.len() > 200 {
        return Err("expected 1 to 200 printable characters".into());
    }
    Ok(s.to_owned())
}

/// `-clusterPeers`: `host:port` entries, kept as written (nginx hashes the text).
fn parse_peer_list(s: &str) -> Result<HostPortList, String> {
    let peers: Vec<String> = s.split(',').map(|p| p.trim().to_owned()).collect();
    for p in &peers {
        match p.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("invalid cluster peer {p:?}: expected host:port")),
        }
    }
    Ok(peers)
}

/// The long flag names, as clap knows them (used by tests).
#[cfg(test)]
fn long_flag_names() -> Vec<String> {
    use clap::CommandFactory;
    Flags::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, FlagsError> {
        parse_from(
            std::iter::once("confluence")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    fn ok(args: &[&str]) -> Flags {
        match parse(args) {
            Ok(flags) => flags,
            Err(err) => panic!("{args:?} failed: {}", err.message),
        }
    }

    fn err(args: &[&str]) -> FlagsError {
        match parse(args) {
            Ok(flags) => panic!("{args:?} parsed: {flags:?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn defaults() {
        let f = ok(&[]);
        assert_eq!(f.addr, "localhost:8080");
        assert_eq!(f.torrent_addr, ":42069");
        assert_eq!(f.cache_capacity, 10_737_418_240);
        assert!(!f.unlimited_cache);
        assert_eq!(f.torrent_grace, Duration::from_secs(60));
        assert!(f.expire_torrents);
        assert_eq!(f.file_dir, None);
        assert!(!f.seed);
        assert!(!f.debug_on_main);
        assert!(f.dht);
        assert!(!f.disable_trackers);
        assert!(f.tcp_peers);
        assert!(f.utp_peers);
        assert!(f.pex);
        assert!(f.implicit_tracker.is_empty());
        assert!(!f.override_trackers);
        assert_eq!(f.public_ip4(), None);
        assert_eq!(f.public_ip6(), None);
        assert!(!f.upnp_port_forwarding);
        assert_eq!(f.data_dir, default_data_dir());
        assert_eq!(f.dht_bootstrap, None);
        assert_eq!(f.mount, None);
        assert_eq!(f.auth_token, None);
    }

    #[test]
    fn value_forms() {
        for args in [
            &["-addr=x:1"][..],
            &["-addr", "x:1"],
            &["--addr=x:1"],
            &["--addr", "x:1"],
        ] {
            assert_eq!(ok(args).addr, "x:1", "{args:?}");
        }
        assert_eq!(ok(&["-torrentAddr=:6881"]).torrent_addr, ":6881");
        assert_eq!(ok(&["-torrentAddr", ":6881"]).torrent_addr, ":6881");
        // Values may contain `=`.
        assert_eq!(ok(&["-authToken=a=b"]).auth_token.as_deref(), Some("a=b"));
        assert_eq!(
            ok(&["-fileDir=/tmp/d"]).file_dir,
            Some(PathBuf::from("/tmp/d"))
        );
        assert_eq!(
            ok(&["-dataDir", "/tmp/c"]).data_dir,
            PathBuf::from("/tmp/c")
        );
        assert_eq!(ok(&["--mount=/mnt/t"]).mount, Some(PathBuf::from("/mnt/t")));
        // Go semantics: the last occurrence wins.
        assert_eq!(ok(&["-addr=a:1", "-addr=b:2"]).addr, "b:2");
    }

    #[test]
    fn case_sensitive_names() {
        assert!(ok(&["-uPnPPortForwarding"]).upnp_port_forwarding);
        assert_eq!(
            ok(&["-torrentGrace=5s"]).torrent_grace,
            Duration::from_secs(5)
        );
        assert_eq!(err(&["-torrentgrace=5s"]).code, 2);
        assert_eq!(err(&["-upnpPortForwarding"]).code, 2);
    }

    #[test]
    fn bools() {
        assert!(ok(&["-seed"]).seed);
        assert!(ok(&["--seed"]).seed);
        assert!(ok(&["-seed=true"]).seed);
        assert!(ok(&["-seed=T"]).seed);
        assert!(ok(&["-seed=1"]).seed);
        assert!(!ok(&["-dht=false"]).dht);
        assert!(!ok(&["-dht=0"]).dht);
        assert!(!ok(&["-pex=F"]).pex);
        assert!(!ok(&["--pex=False"]).pex);
        assert!(!ok(&["-expireTorrents=FALSE"]).expire_torrents);
        assert!(!ok(&["-tcpPeers=f", "-utpPeers=false"]).tcp_peers);
        assert!(ok(&["-dht"]).dht);
        assert!(ok(&["-unlimitedCache"]).unlimited_cache);
        assert!(ok(&["-debugOnMain"]).debug_on_main);
        assert!(ok(&["-disableTrackers"]).disable_trackers);
        assert!(ok(&["-overrideTrackers"]).override_trackers);
        assert!(ok(&["-uPnPPortForwarding=true"]).upnp_port_forwarding);
        // A bool flag does not consume the next argument.
        let f = ok(&["-seed", "-dht=false"]);
        assert!(f.seed);
        assert!(!f.dht);
        // ...so a separate value is a stray positional argument.
        assert_eq!(err(&["-dht", "false"]).code, 2);
        // Bad values.
        assert_eq!(err(&["-dht=no"]).code, 2);
        assert_eq!(err(&["-dht=yes"]).code, 2);
        assert_eq!(err(&["-dht="]).code, 2);
        // Last occurrence wins.
        assert!(!ok(&["-seed", "-seed=false"]).seed);
    }

    #[test]
    fn implicit_tracker_repeats() {
        let f = ok(&[
            "-implicitTracker=http://a/announce",
            "-implicitTracker",
            "udp://b:1",
            "--implicitTracker=http://c/",
        ]);
        assert_eq!(
            f.implicit_tracker,
            ["http://a/announce", "udp://b:1", "http://c/"]
        );
    }

    #[test]
    fn cache_capacity() {
        let cap = |v: &str| ok(&[&format!("-cacheCapacity={v}")]).cache_capacity;
        assert_eq!(cap("1GiB"), 1_073_741_824);
        assert_eq!(cap("500MB"), 500_000_000);
        assert_eq!(cap("11GB"), 11_000_000_000);
        assert_eq!(cap("10gib"), 10_737_418_240);
        assert_eq!(cap("1.5GB"), 1_500_000_000);
        assert_eq!(cap("12345"), 12345);
        assert_eq!(ok(&["-cacheCapacity", "2 MiB"]).cache_capacity, 2 << 20);
        for bad in [
            "",
            "GB",
            "-1",
            "10XB",
            "1.2.3GB",
            "99999999999999999999",
            "16EiB",
            "abc",
        ] {
            let e = err(&[&format!("-cacheCapacity={bad}")]);
            assert_eq!(e.code, 2, "{bad:?}");
            assert!(e.message.contains("cacheCapacity"), "{}", e.message);
        }
    }

    #[test]
    fn parse_bytes_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("1B", 1),
            ("1 b", 1),
            ("1k", 1000),
            ("1kB", 1000),
            ("1KB", 1000),
            ("1Ki", 1024),
            ("1KiB", 1024),
            ("1kib", 1024),
            ("1M", 1_000_000),
            ("1MiB", 1 << 20),
            ("1G", 1_000_000_000),
            ("1T", 1_000_000_000_000),
            ("1TiB", 1 << 40),
            ("1PB", 1_000_000_000_000_000),
            ("1PiB", 1 << 50),
            ("1EB", 1_000_000_000_000_000_000),
            ("15EiB", 15 << 60),
            ("0.5KiB", 512),
            (".5k", 500),
            ("5.k", 5000),
            ("1,000", 1000),
            ("1.5 GB ", 1_500_000_000),
            ("18446744073709551615", u64::MAX),
            ("1.0000000000000000000000000001KiB", 1024),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_bytes(input), Ok(want), "{input:?}");
        }
        for bad in [
            "",
            " 1GB",
            ".",
            "1..5",
            "18446744073709551616",
            "20EB",
            "1 GBs",
            "1e3",
            "1µB",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn torrent_grace() {
        let grace = |v: &str| ok(&[&format!("-torrentGrace={v}")]).torrent_grace;
        assert_eq!(grace("0s"), Duration::ZERO);
        assert_eq!(grace("0"), Duration::ZERO);
        assert_eq!(grace("30s"), Duration::from_secs(30));
        assert_eq!(grace("1m"), Duration::from_secs(60));
        assert_eq!(grace("1h30m"), Duration::from_secs(5400));
        assert_eq!(grace("500ms"), Duration::from_millis(500));
        assert_eq!(
            ok(&["-torrentGrace", "2s"]).torrent_grace,
            Duration::from_secs(2)
        );
        for bad in ["", "1", "-1s", "1x", "1 m", "forever"] {
            assert_eq!(err(&[&format!("-torrentGrace={bad}")]).code, 2, "{bad:?}");
        }
    }

    #[test]
    fn parse_duration_syntax() {
        let cases: &[(&str, Duration)] = &[
            ("1.5s", Duration::from_millis(1500)),
            ("1.5h", Duration::from_secs(5400)),
            (".5m", Duration::from_secs(30)),
            ("1.s", Duration::from_secs(1)),
            ("+2s", Duration::from_secs(2)),
            ("-0s", Duration::ZERO),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("100ns", Duration::from_nanos(100)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("1.0000000000000000000001s", Duration::from_secs(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
        }
        for bad in [
            "",
            "+",
            "-",
            "s",
            ".s",
            "1",
            "1.2.3s",
            "1d",
            "1S",
            "-1s",
            "-1ns",
            "2562048h",
            "99999999999999999999s",
            "1s2",
            " 1s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_flag() {
        let e = err(&["-nosuch"]);
        assert_eq!(e.code, 2);
        assert!(e.message.contains("nosuch"), "{}", e.message);
        assert!(e.message.contains("Usage:"), "{}", e.message);
        assert_eq!(err(&["--nosuch=1"]).code, 2);
        assert_eq!(err(&["-x"]).code, 2);
    }

    #[test]
    fn help() {
        for args in [&["-h"][..], &["-help"], &["--help"], &["-seed", "-h"]] {
            let e = err(args);
            assert_eq!(e.code, 0, "{args:?}");
            assert!(e.message.contains("Usage:"), "{}", e.message);
        }
        let help = err(&["-h"]).message;
        for name in long_flag_names() {
            assert!(
                help.contains(&format!("--{name}")),
                "{name} missing from help:\n{help}"
            );
        }
        for default in [
            "[default: localhost:8080]",
            "[default: :42069]",
            "[default: 10GiB]",
            "[default: 1m]",
            "[default: true]",
        ] {
            assert!(
                help.contains(default),
                "{default} missing from help:\n{help}"
            );
        }
    }

    #[test]
    fn unsupported_flags() {
        let e = err(&["-sqliteStorage"]);
        assert_eq!(e.code, 2);
        assert_eq!(
            e.message,
            "error: -sqliteStorage is not supported: pieces are kept in a moka-indexed file cache \
             under -dataDir; drop the flag (or use -fileDir for plain files)"
        );
        for args in [
            &["-sqliteStorage=/tmp/x.db"][..],
            &["--sqliteStorage"],
            &["--sqliteStorage=x"],
            &["-seed", "-initSqliteStorageSchema=false"],
            &["-sqliteJournalMode=wal"],
        ] {
            let e = err(args);
            assert_eq!(e.code, 2, "{args:?}");
            assert!(
                e.message.contains("moka-indexed file cache"),
                "{}",
                e.message
            );
        }
        let e = err(&["-collectCamouflageData"]);
        assert_eq!(e.code, 2);
        assert!(e
            .message
            .contains("-collectCamouflageData is not supported (it recorded peer handshakes"));
        let e = err(&["--analyzePeerUploadOrder=true"]);
        assert_eq!(e.code, 2);
        assert!(e
            .message
            .contains("-analyzePeerUploadOrder is not supported"));
    }

    #[test]
    fn positional_arguments() {
        assert_eq!(err(&["extra"]).code, 2);
        assert_eq!(err(&["-"]).code, 2);
        assert_eq!(err(&["-seed", "magnet:?xt=urn:btih:abc"]).code, 2);
        // After `--` nothing is a flag: not even an unsupported one.
        let e = err(&["--", "-sqliteStorage"]);
        assert_eq!(e.code, 2);
        assert!(!e.message.contains("moka"), "{}", e.message);
        assert!(ok(&["--"]).dht);
    }

    #[test]
    fn public_ips() {
        let f = ok(&["-dhtPublicIP=1.2.3.4"]);
        assert_eq!(f.public_ip4(), Some(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(f.public_ip6(), None);
        let f = ok(&["-dhtPublicIP=2001:db8::1"]);
        assert_eq!(f.public_ip4(), None);
        assert_eq!(f.public_ip6(), Some("2001:db8::1".parse().unwrap()));
        // The specific flag wins over the alias.
        let f = ok(&[
            "-dhtPublicIP=1.2.3.4",
            "-publicIp4=5.6.7.8",
            "-publicIp6=::1",
        ]);
        assert_eq!(f.public_ip4(), Some(Ipv4Addr::new(5, 6, 7, 8)));
        assert_eq!(f.public_ip6(), Some(Ipv6Addr::LOCALHOST));
        assert_eq!(err(&["-publicIp4=::1"]).code, 2);
        assert_eq!(err(&["-publicIp6=1.2.3.4"]).code, 2);
        assert_eq!(err(&["-dhtPublicIP=nope"]).code, 2);
    }

    #[test]
    fn dht_bootstrap() {
        let f = ok(&["-dhtBootstrap=127.0.0.1:6881,127.0.0.1:6882"]);
        assert_eq!(
            f.dht_bootstrap,
            Some(vec![
                "127.0.0.1:6881".to_owned(),
                "127.0.0.1:6882".to_owned()
            ])
        );
        let f = ok(&["-dhtBootstrap", "router.example.org:6881, [::1]:6881"]);
        assert_eq!(
            f.dht_bootstrap,
            Some(vec![
                "router.example.org:6881".to_owned(),
                "[::1]:6881".to_owned()
            ])
        );
        assert_eq!(ok(&["-dhtBootstrap="]).dht_bootstrap, Some(vec![]));
        for bad in ["127.0.0.1", ":6881", "a:1,", "a:99999", "a:x"] {
            assert_eq!(err(&[&format!("-dhtBootstrap={bad}")]).code, 2, "{bad:?}");
        }
    }

    #[test]
    fn cluster_flags() {
        let f = ok(&[
            "-nodeName=disk 1",
            "-clusterPeers=127.0.0.1:8081, 10.0.0.2:8082,[::1]:8083",
            "-clusterSelf=127.0.0.1:8081",
        ]);
        assert_eq!(f.node_name.as_deref(), Some("disk 1"));
        assert_eq!(
            f.cluster_peers,
            Some(vec![
                "127.0.0.1:8081".to_owned(),
                "10.0.0.2:8082".to_owned(),
                "[::1]:8083".to_owned()
            ])
        );
        assert_eq!(f.cluster_self.as_deref(), Some("127.0.0.1:8081"));
        let f = ok(&[]);
        assert_eq!(
            (f.node_name, f.cluster_peers, f.cluster_self),
            (None, None, None)
        );
        for bad in [
            "-nodeName=",
            "-nodeName=a\nb",
            "-clusterPeers=",
            "-clusterPeers=a",
            "-clusterPeers=a:1,b",
        ] {
            assert_eq!(err(&[bad]).code, 2, "{bad:?}");
        }
    }

    #[test]
    fn auth_token_from_env() {
        let mut f = ok(&[]);
        f.token_from_env(Some("from-env".into()));
        assert_eq!(f.auth_token.as_deref(), Some("from-env"));
        let mut f = ok(&["-authToken=from-flag"]);
        f.token_from_env(Some("from-env".into()));
        assert_eq!(f.auth_token.as_deref(), Some("from-flag"));
        let mut f = ok(&[]);
        f.token_from_env(None);
        assert_eq!(f.auth_token, None);
    }

    #[test]
    fn log_format() {
        assert_eq!(ok(&[]).log_format, "text");
        assert_eq!(ok(&["-logFormat=json"]).log_format, "json");
        assert_eq!(ok(&["-logFormat", "text"]).log_format, "text");
        assert_eq!(err(&["-logFormat=xml"]).code, 2);
    }

    #[test]
    fn non_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', 0xff, b'x']);
        let result = parse_from([OsString::from("confluence"), bad]);
        assert_eq!(result.map_err(|e| e.code).err(), Some(2));
        let bad = OsString::from_vec(vec![0xff]);
        let result = parse_from([OsString::from("confluence"), OsString::from("-addr"), bad]);
        assert_eq!(result.map_err(|e| e.code).err(), Some(2));
        // An empty argv (no program name) is fine too.
        assert!(parse_from(Vec::<OsString>::new()).is_ok());
    }

    #[test]
    fn public_url_proxies_and_cors() {
        use confluence_http::{
            cors::CorsOrigins,
            public_url::{BaseUrl, TrustedProxies},
        };
        let f = ok(&[]);
        assert_eq!(f.public_url, None);
        assert_eq!(f.trusted_proxies, TrustedProxies::default());
        assert!(f.cors_origins.is_empty());
        let f = ok(&[
            "-publicURL=https://media.example/torrents/",
            "-trustedProxies=10.0.0.0/8,192.0.2.1",
            "-corsOrigins=*",
        ]);
        assert_eq!(
            f.public_url.unwrap().url("/playlist"),
            "https://media.example/torrents/playlist"
        );
        assert!(f.trusted_proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(!f.trusted_proxies.trusts("127.0.0.1".parse().unwrap()));
        assert_eq!(f.cors_origins, CorsOrigins::parse("*").unwrap());
        assert!(ok(&["-trustedProxies="]).trusted_proxies.0.is_empty());
        let _: BaseUrl = ok(&["-publicURL", "http://[::1]:8080"]).public_url.unwrap();
        for bad in [
            "-publicURL=ftp://x",
            "-publicURL=https://x/?a",
            "-trustedProxies=10.0.0.0/40",
            "-trustedProxies=localhost",
            "-corsOrigins=player.example",
        ] {
            let e = err(&[bad]);
            assert_eq!(e.code, 2, "{bad}");
            assert!(e.message.contains("invalid"), "{bad}: {}", e.message);
        }
    }
}
