// An flock on a file of the node's, held for the life of the object, with the holder's
// pid written in the file so that a waiter can name it. The kernel drops the lock when
// the process dies, so a killed holder leaves nothing stale.

import AuditTrail
import Foundation
import Node

final class HeldFileLock {
  enum Failure: Error {
    case cannotOpen(reason: String)
    case cannotLock(reason: String)
    /// Another process still held it after the timeout.
    case held(by: Int32?)
  }

  private let fd: Int32

  private init(fd: Int32) { self.fd = fd }
  deinit { close(fd) }

  /// Takes the lock at `path`, waiting up to `timeout` seconds while another process
  /// holds it; `waiting` hears once, with the holder's pid, that it waits.
  static func acquire(path: String, timeout: Double, waiting: (Int32?) -> Void) throws -> HeldFileLock {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Failure.cannotOpen(reason: String(cString: strerror(errno))) }
    let deadline = Clock.monotonicSeconds() + timeout
    var told = false
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
      guard errno == EWOULDBLOCK || errno == EINTR else {
        let reason = String(cString: strerror(errno))
        close(fd)
        throw Failure.cannotLock(reason: reason)
      }
      let holder = holderPid(fd)
      guard Clock.monotonicSeconds() < deadline else {
        close(fd)
        throw Failure.held(by: holder)
      }
      if !told {
        told = true
        waiting(holder)
      }
      usleep(50_000)
    }
    let pid = Array("\(getpid())\n".utf8)
    _ = ftruncate(fd, 0)
    _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    return HeldFileLock(fd: fd)
  }

  private static func holderPid(_ fd: Int32) -> Int32? {
    var buffer = [UInt8](repeating: 0, count: 32)
    let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard n > 0 else { return nil }
    return Int32(String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
  }
}
