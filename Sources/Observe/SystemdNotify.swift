// sd_notify without libsystemd: one datagram to the unix socket systemd names in
// $NOTIFY_SOCKET, so a `Type=notify` unit knows when the daemon serves.

import Foundation

public enum SystemdNotify {
  /// Sends `state` (e.g. "READY=1") when NOTIFY_SOCKET is set; false if it could not.
  @discardableResult
  public static func send(_ state: String, environment: [String: String] = ProcessInfo.processInfo.environment)
    -> Bool
  {
    guard var path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
    if path.hasPrefix("@") { path = "\0" + path.dropFirst() }  // the abstract namespace
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (i, b) in bytes.enumerated() { raw[i] = b }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
    let message = Array(state.utf8)
    let sent = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
        message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, length) }
      }
    }
    return sent == message.count
  }
}

#if canImport(Glibc)
  import Glibc
#endif
