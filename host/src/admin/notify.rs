//! systemd's service notification protocol (`sd_notify`): one datagram to
//! the Unix socket `NOTIFY_SOCKET` names (a path, or `@name` for an
//! abstract socket). `Type=notify` units wait for `READY=1`.

use std::os::unix::net::UnixDatagram;

/// Sends `msg` (e.g. `READY=1`) to `NOTIFY_SOCKET`; `Ok(false)` when the
/// variable is not set (not run by systemd).
pub fn send(msg: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => send_to(&path, msg).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `msg` to the notification socket `path`.
pub fn send_to(path: &std::ffi::OsStr, msg: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(msg.as_bytes(), &addr)?;
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    } else {
        socket.send_to(msg.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_message_reaches_the_socket_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        super::send_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let abstract_name = format!("@eventsift-test-{}", std::process::id());
        let abstract_listener = {
            use std::os::linux::net::SocketAddrExt;
            let addr =
                std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name.as_bytes()[1..])
                    .unwrap();
            std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap()
        };
        super::send_to(std::ffi::OsStr::new(&abstract_name), "STOPPING=1").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
