//! The cluster of `tests/it/cluster.rs`: Debian's nginx (with njs) running `examples/cluster/` on a
//! free loopback port in front of N daemons, each stopped by PID.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use confluence_http::cluster::ring::Ring;

use crate::common::{self, Daemon, Resp};

const NGINX: &str = "/usr/sbin/nginx";
const NJS: &str = "/usr/lib/nginx/modules/ngx_http_js_module.so";

/// nginx from `examples/cluster/`, stopped (SIGTERM, then SIGKILL) by PID on drop.
pub struct Nginx {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster")
}

impl Nginx {
    /// The example config with its `listen` on 127.0.0.1:`port` and `upstreams` as servers.
    pub fn start(upstreams: &[String]) -> Nginx {
        for (what, path) in [
            ("nginx (Debian package nginx)", NGINX),
            ("njs (libnginx-mod-http-js)", NJS),
        ] {
            assert!(
                Path::new(path).exists(),
                "{what} is missing at {path}: tests/run.sh installs tests/deps.txt"
            );
        }
        let dir = common::temp_dir("nginx");
        for f in ["nginx.conf", "confluence.conf", "confluence.js"] {
            fs::copy(example_dir().join(f), dir.join(f)).expect("copying examples/cluster");
        }
        let port = common::free_port();
        let conf = fs::read_to_string(dir.join("confluence.conf")).unwrap();
        assert!(
            conf.contains("listen 8080;"),
            "examples/cluster/confluence.conf: no `listen 8080;`"
        );
        let conf = conf.replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
        fs::write(dir.join("confluence.conf"), conf).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {u} max_fails=1 fail_timeout=10s;\n"))
            .collect();
        fs::write(dir.join("confluence-upstream.conf"), servers).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("spawning nginx");
        let mut n = Nginx {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                n.child = None;
                panic!("nginx exited at start ({st}): {}", n.log());
            }
            let r = common::try_request(port, "GET", "/health", &[], b"", Duration::from_secs(2));
            if r.is_ok_and(|r| r.status == 200) {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not serving within 10 s: {}",
                n.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub fn get(&self, target: &str) -> Resp {
        self.req("GET", target, &[], b"")
    }

    pub fn get_h(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        self.req("GET", target, headers, b"")
    }

    pub fn req(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        common::request(
            self.port,
            method,
            target,
            headers,
            body,
            common::HTTP_TIMEOUT,
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: the master stops its workers and exits.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// N daemons behind nginx, named `node0`…, with the same `-clusterPeers`.
pub struct Cluster {
    pub nodes: Vec<Option<Daemon>>,
    dirs: Vec<PathBuf>,
    pub peers: Vec<String>,
    pub nginx: Nginx,
}

impl Cluster {
    pub fn start(n: usize, args: &[&str]) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| common::free_port()).collect();
        let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| common::temp_dir(&format!("node{i}")))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                a.push(format!("-clusterPeers={}", peers.join(",")));
                a.push(format!("-nodeName=node{i}"));
                let addr = vec![format!("-addr=127.0.0.1:{port}")];
                Some(Daemon::launch(&dirs[i], addr, port, a).expect("cluster node start"))
            })
            .collect();
        let nginx = Nginx::start(&peers);
        Cluster {
            nodes,
            dirs,
            peers,
            nginx,
        }
    }

    /// The name of the node nginx must pick for `ih` among the nodes still running.
    pub fn owner(&self, ih: &str) -> String {
        let live: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect();
        let names: Vec<&String> = live.iter().map(|&i| &self.peers[i]).collect();
        let ring = Ring::new(&names);
        let i = live[ring.owner(ih.as_bytes()).expect("a live node")];
        format!("node{i}")
    }

    pub fn node(&self, name: &str) -> &Daemon {
        let i: usize = name.trim_start_matches("node").parse().expect("node name");
        self.nodes[i].as_ref().expect("node running")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The daemons stop (by PID) before their data dirs go.
        self.nodes.clear();
        for d in &self.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
}
