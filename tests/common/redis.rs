//! A real `redis-server` for the cluster tests: started on a free loopback port in a
//! directory of its own, without persistence (a restart loses everything, as Redis does when
//! it lost its data), stopped when dropped. Without `redis-server` the test fails, saying so:
//! it never passes by skipping (`.ci/run` installs Debian's package).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// A master of a Redis Cluster (`--cluster-enabled yes`).
    clustered: bool,
}

impl RedisServer {
    /// A new Redis on a free port, answering PING.
    pub fn start() -> RedisServer {
        RedisServer::start_as(false)
    }

    /// A new Redis on a free port with `--cluster-enabled yes`, in no cluster yet.
    pub fn start_clustered() -> RedisServer {
        RedisServer::start_as(true)
    }

    fn start_as(clustered: bool) -> RedisServer {
        for _ in 0..10 {
            let port = free_port();
            let mut redis = RedisServer {
                port,
                child: None,
                dir: tempfile::tempdir().unwrap(),
                clustered,
            };
            // The port may have been taken meanwhile: another one, then.
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 10 free ports");
    }

    /// Starts (again) on the same port; whether it answers PING.
    fn spawn(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.clustered {
            // The bus port of its own (the default, port + 10000, may not exist).
            command
                .args(["--cluster-enabled", "yes", "--cluster-port"])
                .arg(free_port().to_string())
                .arg("--cluster-config-file")
                .arg(self.dir.path().join("nodes.conf"));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (Debian: apt-get install redis-server); .ci/run does")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.ping() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether it answers PING.
    pub fn ping(&self) -> bool {
        self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG")
    }

    /// Runs `redis-cli` against it; its output.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The URL for `CLUSTER_REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (`kill -9`): everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on its port, empty.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

/// A loopback port free now (it may be taken before it is used: callers retry).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of 3 masters (no replicas, no persistence) on free loopback ports, each
/// in a directory of its own, its slots spread by `redis-cli --cluster create`; stopped when
/// dropped.
pub struct RedisCluster {
    pub masters: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three masters, every slot covered, `cluster_state:ok` on each.
    pub fn start() -> RedisCluster {
        let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_clustered()).collect();
        let addrs: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { masters };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cluster.masters.iter().all(|m| {
            m.cli(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The URL for `CLUSTER_REDIS_URL`: every master as a seed.
    pub fn url(&self) -> String {
        let mut masters = self.masters.iter();
        let first = masters.next().unwrap();
        let rest: Vec<String> = masters
            .map(|m| format!("node=127.0.0.1:{}", m.port))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            first.port,
            rest.join("&")
        )
    }

    /// The port of the master serving `key`'s slot (as `CLUSTER KEYSLOT` and `CLUSTER
    /// NODES` say).
    pub fn master_of(&self, key: &str) -> u16 {
        let m = &self.masters[0];
        let slot: u16 = m
            .cli(&["CLUSTER", "KEYSLOT", key])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let nodes = m.cli(&["CLUSTER", "NODES"]).unwrap();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields.get(2).is_some_and(|f| f.contains("master")) {
                continue;
            }
            let port = fields[1]
                .split('@')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap();
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) {
                    if (lo..=hi).contains(&slot) {
                        return port.parse().unwrap();
                    }
                }
            }
        }
        panic!("no master serves slot {slot} of {key}: {nodes}");
    }
}
