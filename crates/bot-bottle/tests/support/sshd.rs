//! A real `sshd` (Debian's openssh-server) on loopback with its own host
//! key, logging in this user with one client key: git-gate's upstream, and
//! the server whose key a launch pins on first use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A new ed25519 key at `path`; its public line.
pub fn keygen(path: &Path) -> String {
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", path.to_str().unwrap()])
        .output()
        .unwrap());
    std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The host key's public line (`ssh-ed25519 AAAA… comment`).
    pub host_key: String,
    pub client_key: PathBuf,
    pub user: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Start one in `dir` (its keys and config go there).
    pub fn start(dir: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.exists(), "sshd is missing: scripts/test.sh installs Debian's openssh-server");
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key = keygen(&dir.join("host_key"));
        let client = keygen(&dir.join("client_key"));
        std::fs::write(dir.join("authorized_keys"), format!("{client}\n")).unwrap();
        let user = ok(Command::new("id").arg("-un").output().unwrap());
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, port, host_key, client_key: dir.join("client_key"), user }
    }

    pub fn url(&self, repo: &Path) -> String {
        format!("ssh://{}@127.0.0.1:{}{}", self.user, self.port, repo.display())
    }

    /// `SHA256:…` of the host key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self, dir: &Path) -> String {
        let line = ok(Command::new("ssh-keygen").arg("-lf").arg(dir.join("host_key.pub")).output().unwrap());
        line.split_whitespace().nth(1).unwrap().to_string()
    }
}
