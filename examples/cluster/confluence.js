// Which torrent a request names, as confluence reads it, for nginx's `hash $confluence_ih
// consistent`: 40 lower-case hex digits, or '' when the URL names none (nginx then picks any
// daemon; a POST /metainfo or /upload is forwarded by that daemon to the owner, see README).
//
// Every spelling of one torrent gives the same key: `ih=` in either case, the path form
// `/data/infohash/<ih>/...`, and a magnet's first `xt=urn:btih:` in hex (either case) or
// base32. Query strings are split as Go does (the daemon follows Go's rules): `&` separates
// pairs, a pair with `;` or a bad escape is dropped, `+` is a space, the first value wins.

var BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function unescape(s, plus) {
    if (plus) {
        s = s.replace(/\+/g, ' ');
    }
    if (/%(?![0-9A-Fa-f]{2})/.test(s)) {
        return null;
    }
    try {
        return decodeURIComponent(s);
    } catch (e) {
        // Not UTF-8: no infohash spelling contains such bytes.
        return '\u0000';
    }
}

function firstValue(query, name) {
    var pairs = query.split('&');
    for (var i = 0; i < pairs.length; i++) {
        var p = pairs[i];
        if (p === '' || p.indexOf(';') >= 0) {
            continue;
        }
        var eq = p.indexOf('=');
        var k = unescape(eq < 0 ? p : p.slice(0, eq), true);
        var v = eq < 0 ? '' : unescape(p.slice(eq + 1), true);
        if (k === null || v === null) {
            continue;
        }
        if (k === name) {
            return v;
        }
    }
    return '';
}

// 40 hex digits (either case) or 32 base32 characters (either case) -> lower-case hex.
function hexOf(s) {
    if (/^[0-9A-Fa-f]{40}$/.test(s)) {
        return s.toLowerCase();
    }
    if (!/^[A-Za-z2-7]{32}$/.test(s)) {
        return '';
    }
    s = s.toUpperCase();
    var out = '';
    var acc = 0;
    var bits = 0;
    for (var i = 0; i < s.length; i++) {
        acc = ((acc << 5) | BASE32.indexOf(s.charAt(i))) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            var b = (acc >> bits) & 0xff;
            out += (b < 16 ? '0' : '') + b.toString(16);
        }
    }
    return out;
}

function magnetIh(m) {
    var q = m.split('#')[0];
    var at = q.indexOf('?');
    if (at < 0 || q.slice(0, at).toLowerCase() !== 'magnet:') {
        return '';
    }
    var pairs = q.slice(at + 1).split('&');
    for (var i = 0; i < pairs.length; i++) {
        var p = pairs[i];
        if (p === '' || p.indexOf(';') >= 0) {
            continue;
        }
        var eq = p.indexOf('=');
        var k = unescape(eq < 0 ? p : p.slice(0, eq), true);
        var v = eq < 0 ? '' : unescape(p.slice(eq + 1), true);
        if (k === 'xt' && v !== null && v.indexOf('urn:btih:') === 0) {
            return hexOf(v.slice(9));
        }
    }
    return '';
}

function ih(r) {
    var uri = r.variables.request_uri || '';
    var at = uri.indexOf('?');
    var path = at < 0 ? uri : uri.slice(0, at);
    var query = at < 0 ? '' : uri.slice(at + 1);
    var form = /^\/data\/infohash\/([^\/]*)/.exec(path);
    if (form) {
        var seg = unescape(form[1], false);
        return seg === null ? '' : hexOf(seg);
    }
    // A non-empty magnet wins over ih, as in the daemon.
    var magnet = firstValue(query, 'magnet');
    if (magnet !== '') {
        return magnetIh(magnet);
    }
    return hexOf(firstValue(query, 'ih'));
}

export default { ih, hexOf, magnetIh };
