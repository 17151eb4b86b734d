// One daemon per node: `understudy start` holds an exclusive lock on
// `NODE/state/daemon.lock` for its whole life and writes its pid beside it, so that
// `stop` knows whom to signal and a second `start` is refused. The kernel drops the
// lock when the process dies, even by SIGKILL, so a crash never leaves a stale lock.

import AuditTrail
import Foundation

public final class DaemonLock: @unchecked Sendable {
  private let fd: Int32

  public enum Problem: Error, CustomStringConvertible {
    case alreadyRunning(node: String, pid: Int32?)
    case notRunning(node: String)
    case didNotStop(node: String, pid: Int32, seconds: Double)
    case io(String)

    public var description: String {
      switch self {
      case .alreadyRunning(let node, let pid):
        "node \(node) already has a running daemon\(pid.map { " (pid \($0))" } ?? ""); stop it first with `understudy stop --node \(node)`"
      case .notRunning(let node): "no daemon is running on node \(node)"
      case .didNotStop(let node, let pid, let seconds):
        "the daemon of node \(node) (pid \(pid)) did not stop within \(Int(seconds)) s"
      case .io(let reason): reason
      }
    }
  }

  static func lockPath(_ layout: NodeLayout) -> String { layout.state + "/daemon.lock" }
  static func pidPath(_ layout: NodeLayout) -> String { layout.state + "/daemon.pid" }

  /// Takes the node's daemon lock or says who holds it.
  public static func acquire(_ layout: NodeLayout) throws -> DaemonLock {
    let fd = open(lockPath(layout), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Problem.io("cannot open \(lockPath(layout)): errno \(errno)") }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      close(fd)
      throw Problem.alreadyRunning(node: layout.root, pid: try runningPid(layout))
    }
    try DurableFile.create(path: pidPath(layout), contents: Array("\(getpid())\n".utf8))
    return DaemonLock(fd: fd)
  }

  private init(fd: Int32) { self.fd = fd }

  deinit { close(fd) }

  /// Whether some process holds the lock now.
  public static func isHeld(_ layout: NodeLayout) -> Bool {
    let fd = open(lockPath(layout), O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    if flock(fd, LOCK_EX | LOCK_NB) == 0 {
      flock(fd, LOCK_UN)
      return false
    }
    return true
  }

  /// nil: no pid file (a daemon starting has not written it yet). A pid file that does
  /// not hold a pid is an error naming it: `stop` must not guess whom to signal.
  static func runningPid(_ layout: NodeLayout) throws -> Int32? {
    let path = pidPath(layout)
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      guard FileManager.default.fileExists(atPath: path) else { return nil }
      throw Problem.io("cannot read the daemon's pid file \(path): \(error.localizedDescription)")
    }
    guard let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
      throw Problem.io(
        "the daemon's pid file \(path) holds no pid (\(text.utf8.count) bytes); find the daemon with `ps` and stop it by its pid"
      )
    }
    return pid
  }

  /// Stops the node's daemon if one runs; returns its pid then.
  public static func stopIfRunning(_ layout: NodeLayout, timeout: Double = 60) throws -> Int32? {
    guard isHeld(layout) else { return nil }
    do {
      return try stop(layout, timeout: timeout)
    } catch Problem.notRunning {
      return nil  // it ended meanwhile
    }
  }

  /// Asks the node's daemon to stop (SIGTERM) and waits until it has released the lock.
  public static func stop(_ layout: NodeLayout, timeout: Double) throws -> Int32 {
    guard isHeld(layout) else { throw Problem.notRunning(node: layout.root) }
    guard let pid = try runningPid(layout) else {
      throw Problem.io("the daemon of node \(layout.root) has not written its pid to \(pidPath(layout)) yet; try again")
    }
    guard kill(pid, SIGTERM) == 0 else { throw Problem.io("cannot signal pid \(pid): errno \(errno)") }
    let deadline = Clock.monotonicSeconds() + timeout
    while isHeld(layout) {
      if Clock.monotonicSeconds() > deadline { throw Problem.didNotStop(node: layout.root, pid: pid, seconds: timeout) }
      usleep(20_000)
    }
    return pid
  }
}

#if canImport(Glibc)
  import Glibc
#endif
